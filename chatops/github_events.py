"""GitHub: a verified webhook delivery, turned into deploys (or, most of the time, nothing).

Routed on ``X-GitHub-Event``:

* ``ping`` (sent when the webhook is created): 200, nothing else happens;
* ``deployment`` with action ``created``, for a configured repository and environment: start
  the deploy flow **attached to that GitHub deployment** (``deployment_id``), so its statuses
  (in_progress, success, ...) land on it and no second deployment is created. Deployments this
  system created itself carry ``{"chatops": {...}}`` in their payload and are ignored: their
  run already exists;
* ``push`` to a branch that an environment auto-deploys (``Environment.auto_deploy_branch``):
  deploy the pushed commit (``after``) there. Tag pushes and deletions never deploy;
* anything else (``deployment_status``, ``status``, ``check_suite``, ...): 200, ignored, logged.

Every ref and sha read from a payload is validated before use. The same delivery (or the same
deployment) arriving twice starts nothing new: runs are started with an idempotency key,
``github-deployment-<id>`` or ``github-push-<delivery id>-<app>-<environment>``, and Prefect
returns the existing run for a key it has seen.

The answer (status and a small JSON body) is what GitHub shows under the webhook's "Recent
Deliveries": 202 started, 200 ignored (with the reason), 409 refused because the environment
is locked, 422 a payload value we refuse, 503 Prefect could not be reached (redeliver later).
"""

import asyncio
import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatops.catalog import Catalog, Snapshot
from chatops.commands import ENVIRONMENT_ALIASES, CommandError, validate_name, validate_ref
from chatops.locks import Locks
from chatops.starter import Background, RunRequest, Starter, deploy_run
from tasks.github import PAYLOAD_MARK

logger = logging.getLogger("chatops.github")

ZERO_SHA = "0" * 40
EVENT = re.compile(r"[a-z_]{1,64}")
DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
HEX_SHA = re.compile(r"[0-9a-f]{40}")
LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?")
START_TIMEOUT = 60.0


class BadDelivery(Exception):
    """The request is not a readable webhook delivery (HTTP 400)."""


class NotReady(Exception):
    """The gateway cannot judge the delivery yet (HTTP 503, GitHub may redeliver)."""


class Ignored(Exception):
    """A delivery we deliberately do nothing with; the message says why."""


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: its event name, delivery id and parsed JSON payload."""

    event: str
    delivery_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """The HTTP answer GitHub records for the delivery."""

    status: int
    body: dict[str, Any]


def read_delivery(headers: Mapping[str, str], body: bytes) -> Delivery:
    """Read the event headers and the JSON body (or a form's ``payload`` field)."""
    event = headers.get("x-github-event") or ""
    if not EVENT.fullmatch(event):
        raise BadDelivery("missing or malformed X-GitHub-Event header")
    delivery_id = headers.get("x-github-delivery")
    if delivery_id is not None and not DELIVERY_ID.fullmatch(delivery_id):
        raise BadDelivery("malformed X-GitHub-Delivery header")
    try:
        text = body.decode("utf-8")
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            text = dict(urllib.parse.parse_qsl(text, max_num_fields=8)).get("payload", "")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadDelivery("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadDelivery("the payload is not a JSON object")
    return Delivery(event, delivery_id, payload)


class GitHubEvents:
    """Handles deliveries; see the module docstring for what each event does."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        locks: Locks,
        starter: Starter,
        background: Background,
        deploy_deployment: str,
        budget: float = 8.0,
    ) -> None:
        self.catalog = catalog
        self.locks = locks
        self.starter = starter
        self.background = background
        self.deploy_deployment = deploy_deployment
        self.budget = budget

    async def handle(self, delivery: Delivery) -> Outcome:
        handlers = {"ping": self._ping, "deployment": self._deployment, "push": self._push}
        handler = handlers.get(delivery.event)
        try:
            if handler is None:
                raise Ignored(f"{delivery.event} events are not used")
            outcome = await handler(delivery)
        except Ignored as exc:
            outcome = Outcome(200, {"ignored": str(exc)})
        except BadDelivery as exc:
            outcome = Outcome(400, {"error": str(exc)})
        except CommandError as exc:
            outcome = Outcome(422, {"error": str(exc)})
        except NotReady as exc:
            outcome = Outcome(503, {"error": str(exc)})
        logger.info(
            "GitHub %s delivery %s: %s %s",
            delivery.event,
            delivery.delivery_id,
            outcome.status,
            json.dumps(outcome.body)[:500],
        )
        return outcome

    async def _ping(self, delivery: Delivery) -> Outcome:
        return Outcome(200, {"pong": True})

    async def _deployment(self, delivery: Delivery) -> Outcome:
        payload = delivery.payload
        if payload.get("action") != "created":
            raise Ignored(f"deployment action {str(payload.get('action'))[:40]!r} is not used")
        deployment = _dict(payload.get("deployment"))
        if _made_by_chatops(deployment.get("payload")):
            raise Ignored("this deployment was created by chatops; its run exists already")
        deployment_id = deployment.get("id")
        if type(deployment_id) is not int or deployment_id <= 0:
            raise BadDelivery("deployment.id is not a positive integer")
        sha, ref = _sha(deployment.get("sha")), validate_ref(deployment.get("ref"))
        environment = _environment(deployment.get("environment"))
        repository = _repository(payload)
        name, app_tasks = self._app_for(repository, environment)
        request = deploy_run(
            app=name,
            environment=environment,
            ref=ref,
            sha=sha,
            deployment_id=deployment_id,
            requested_by=_login(_dict(deployment.get("creator")).get("login")),
            task=_task(deployment.get("task"), app_tasks),
            key=f"github-deployment-{deployment_id}",
            deployment=self.deploy_deployment,
        )
        return await self._start_all([request])

    async def _push(self, delivery: Delivery) -> Outcome:
        payload = delivery.payload
        ref = payload.get("ref")
        if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
            raise Ignored("only branch pushes deploy")
        if payload.get("deleted") is not False or payload.get("after") == ZERO_SHA:
            raise Ignored("a deleted branch is never deployed")
        branch, sha = validate_ref(ref.removeprefix("refs/heads/")), _sha(payload.get("after"))
        if delivery.delivery_id is None:
            raise BadDelivery("missing X-GitHub-Delivery header")
        repository = _repository(payload)
        snapshot = self._snapshot()
        targets = [
            (name, env_name)
            for name, app in snapshot.apps_for_repository(repository)
            for env_name in app.environments
            if (env := snapshot.environment(name, env_name)) is not None
            and env.auto_deploy_branch == branch
        ]
        if not targets:
            raise Ignored(f"no environment auto-deploys {branch} of {repository}")
        pusher = _dict(payload.get("pusher")).get("name") or _dict(payload.get("sender")).get(
            "login"
        )
        requests = [
            deploy_run(
                app=name,
                environment=env_name,
                ref=branch,
                sha=sha,
                requested_by=_login(pusher),
                key=f"github-push-{delivery.delivery_id}-{name}-{env_name}",
                deployment=self.deploy_deployment,
            )
            for name, env_name in targets
        ]
        return await self._start_all(requests)

    def _snapshot(self) -> Snapshot:
        snapshot = self.catalog.snapshot
        if not snapshot.loaded:
            raise NotReady("the configuration has not been loaded from Prefect yet")
        return snapshot

    def _app_for(self, repository: str, environment: str) -> tuple[str, dict[str, str]]:
        """The one app of ``repository`` that has ``environment``, and its custom tasks."""
        snapshot = self._snapshot()
        apps = snapshot.apps_for_repository(repository)
        if not apps:
            raise Ignored(f"repository {repository} is not configured")
        matches = [
            (name, app) for name, app in apps if snapshot.environment(name, environment) is not None
        ]
        if not matches:
            raise Ignored(f"no app of {repository} has an environment {environment!r}")
        if len(matches) > 1:
            names = ", ".join(name for name, _ in matches)
            raise Ignored(f"apps {names} all deploy {repository} to {environment}; ambiguous")
        name, app = matches[0]
        return name, app.tasks

    async def _start_all(self, requests: list[RunRequest]) -> Outcome:
        """Start every run within the budget; past it, answer 202 and let them finish."""
        outcome = await self.background.within(
            self._start_each(requests), self.budget, then=self._log_late
        )
        if outcome is not None:
            return outcome
        return Outcome(
            202,
            {
                "starting": [r.title for r in requests],
                "note": "Prefect is slow; the runs start in the background",
            },
        )

    async def _start_each(self, requests: list[RunRequest]) -> Outcome:
        results = await asyncio.gather(*(self._start(r) for r in requests))
        if any("error" in r for r in results):
            return Outcome(503, {"runs": results})
        if any("run_id" in r for r in results):
            return Outcome(202, {"runs": results})
        return Outcome(409, {"runs": results})

    async def _start(self, request: RunRequest) -> dict[str, Any]:
        app, environment = request.parameters["app"], request.parameters["environment"]
        result: dict[str, Any] = {"app": app, "environment": environment}
        try:
            held = await self.locks.blocking(app, environment, user=None)
            if held is not None:
                reason = f": {held.message}" if held.message else ""
                return {**result, "locked": f"locked by {held.by} since {held.since}{reason}"}
            run = await asyncio.wait_for(self.starter.start(request), START_TIMEOUT)
        except Exception as exc:  # LocksUnavailable, Prefect errors, timeouts
            logger.warning("Starting %s failed: %s", request.title, type(exc).__name__)
            return {**result, "error": f"could not start the run ({type(exc).__name__})"}
        return {**result, "run_id": run.id, "run_url": run.url}

    async def _log_late(self, outcome: Outcome) -> None:
        logger.info(
            "Runs started after the answer: %s %s", outcome.status, json.dumps(outcome.body)[:500]
        )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _made_by_chatops(payload: Any) -> bool:
    """Whether a deployment payload carries our mark (GitHub may hand it back as a string)."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            return False
    return isinstance(payload, dict) and PAYLOAD_MARK in payload


def _sha(value: Any) -> str:
    if not isinstance(value, str) or not HEX_SHA.fullmatch(value):
        raise CommandError("the commit sha is not 40 hex digits")
    return value


def _environment(value: Any) -> str:
    name = validate_name("environment", value)
    return ENVIRONMENT_ALIASES.get(name, name)


def _repository(payload: dict[str, Any]) -> str:
    name = _dict(payload.get("repository")).get("full_name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", name):
        raise Ignored("the payload names no repository")
    return name


def _task(value: Any, tasks: dict[str, str]) -> str:
    """GitHub's ``task`` (``deploy``, ``deploy:migrate`` or ``migrate``) if the app has it."""
    name = value.removeprefix("deploy:") if isinstance(value, str) else ""
    return name if name in tasks else "deploy"


def _login(value: Any) -> str:
    return value if isinstance(value, str) and LOGIN.fullmatch(value) else "github"
