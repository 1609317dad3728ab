"""Shared pieces of the deploy-on-green tests: the webhooks CI makes GitHub send, built on
octokit's example payloads, and a check that they still match octokit's schemas.

No tests here; ``test_green*.py`` import what they need.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource

from tests.fakes import FIXTURES

SHARED_WEBHOOKS = FIXTURES / "github_webhooks"
MORE_WEBHOOKS = Path(__file__).parent / "fixtures" / "github_webhooks"
"""``check_run`` from octokit/webhooks (the shared fixtures have no example of it)."""
SCHEMAS = {
    "status": "status/event.schema.json",
    "check_suite": "check_suite/completed.schema.json",
    "check_run": "check_run/completed.schema.json",
}


def _example(event: str) -> dict[str, Any]:
    if event == "check_run":
        return json.loads((MORE_WEBHOOKS / "check_run.completed.payload.json").read_text())
    name = {"status": "status", "check_suite": "check_suite.completed"}[event]
    return json.loads((SHARED_WEBHOOKS / f"{name}.payload.json").read_text())


def _repository(payload: dict[str, Any], full_name: str) -> None:
    owner, name = full_name.split("/")
    payload["repository"].update(full_name=full_name, name=name)
    payload["repository"]["owner"]["login"] = owner


def status_event(repository: str, sha: str, context: str, state: str, branch: str) -> bytes:
    """The ``status`` delivery GitHub sends when CI reports ``context`` on ``sha``."""
    payload = _example("status")
    _repository(payload, repository)
    payload.update(sha=sha, context=context, state=state)
    payload["commit"]["sha"] = sha
    payload["branches"] = [{"name": branch, "commit": {"sha": sha, "url": ""}, "protected": False}]
    return json.dumps(payload).encode()


def check_run_event(repository: str, sha: str, name: str, conclusion: str, branch: str) -> bytes:
    """The ``check_run`` delivery (action ``completed``) for check run ``name`` on ``sha``."""
    payload = _example("check_run")
    _repository(payload, repository)
    run = payload["check_run"]
    run.update(head_sha=sha, name=name, conclusion=conclusion, status="completed")
    run["check_suite"].update(head_sha=sha, head_branch=branch, after=sha)
    return json.dumps(payload).encode()


def check_suite_event(repository: str, sha: str, conclusion: str, branch: str) -> bytes:
    """The ``check_suite`` delivery (action ``completed``) for ``sha``."""
    payload = _example("check_suite")
    _repository(payload, repository)
    payload["check_suite"].update(head_sha=sha, head_branch=branch, conclusion=conclusion)
    return json.dumps(payload).encode()


def _registry() -> Registry:
    resources = []
    for folder in (SHARED_WEBHOOKS / "schemas", MORE_WEBHOOKS / "schemas"):
        for path in folder.rglob("*.schema.json"):
            schema = json.loads(path.read_text())
            resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def schema_problems(event: str, body: bytes) -> list[str]:
    """What octokit's schema of ``event`` finds wrong in a payload we send ([] when none)."""
    folder = MORE_WEBHOOKS if event == "check_run" else SHARED_WEBHOOKS
    schema = json.loads((folder / "schemas" / SCHEMAS[event]).read_text())
    validator = Draft7Validator(schema, registry=_registry())
    return [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(json.loads(body))
    ]
