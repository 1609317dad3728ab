"""GitHub: a verified webhook delivery, turned into deploy requests (or, most of the time, none).

Routed on ``X-GitHub-Event``:

* ``ping`` (sent when the webhook is created): 200, nothing else happens;
* ``deployment`` with action ``created``, for a configured repository and environment: start
  the deploy flow **attached to that GitHub deployment** (``deployment_id``), so its statuses
  (in_progress, success, ...) land on it and no second deployment is created. Deployments this
  system created itself carry ``{"chatops": {...}}`` in their payload and are ignored: their
  run already exists;
* ``push`` to a branch that an environment auto-deploys on push (``Environment.auto_deploy_branch``,
  ``auto_deploy_on: push``): deploy the pushed commit (``after``) there. Tag pushes and deletions
  never deploy;
* ``status``, ``check_suite`` and ``check_run``: deploy on green (:mod:`chatops.github.green`);
* anything else (``deployment_status``, ...): 200, ignored, logged.

Every ref and sha read from a payload is validated before use. The same delivery (or the same
deployment) arriving twice starts nothing new: each request carries an idempotency key,
``github-deployment-<id>`` or ``github-push-<delivery id>-<app>-<environment>``, which the
intake and Prefect both keep unique.

The gateway answers (what GitHub shows under the webhook's "Recent Deliveries"): 202 stored and
queued to start, 200 ignored (with the reason), 409 refused (e.g. the environment is locked; the
deployment also gets a ``failure`` status saying why), 422 a payload value we refuse (a
deployment whose ``task`` the app does not define also gets an ``error`` status and deploys
nothing), 503 the
configuration is not loaded yet (redeliver later).
"""

import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from blocks import App
from blocks.environment import AUTO_ON_PUSH
from chatops.catalog import Snapshot
from chatops.grammar import ENVIRONMENT_ALIASES, Command, CommandError, validate_name, validate_ref
from chatops.intake import ReplyTo
from chatops.request import Request, Requester
from model.errors import ChatopsError, DeployError
from tasks.github import PAYLOAD_MARK

logger = logging.getLogger("chatops.github")

ZERO_SHA = "0" * 40
EVENT = re.compile(r"[a-z_]{1,64}")
DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
HEX_SHA = re.compile(r"[0-9a-f]{40}")
LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?")


class BadDelivery(ChatopsError):
    """The request is not a readable webhook delivery (HTTP 400)."""


class NotReady(DeployError):
    """The gateway cannot judge the delivery yet (HTTP 503, GitHub may redeliver)."""


class Ignored(ChatopsError):
    """A delivery we deliberately do nothing with; the message says why."""


class UnknownTask(DeployError):
    """A deployment asks for a task its app does not define: nothing is deployed, and the
    deployment gets an ``error`` status saying why (``reply_to`` says where)."""

    def __init__(self, message: str, reply_to: ReplyTo) -> None:
        super().__init__(message)
        self.reply_to = reply_to


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


def requests_for(delivery: Delivery, config: Snapshot) -> list[tuple[Request, ReplyTo]]:
    """The deploy requests a delivery makes; :class:`Ignored` (with why) when it makes none."""
    readers = {"deployment": _deployment, "push": _push}
    reader = readers.get(delivery.event)
    if reader is None:
        raise Ignored(f"{delivery.event} events are not used")
    if not config.loaded:
        raise NotReady("the configuration has not been loaded from Prefect yet")
    return reader(delivery, config)


def _deployment(delivery: Delivery, config: Snapshot) -> list[tuple[Request, ReplyTo]]:
    payload = delivery.payload
    if payload.get("action") != "created":
        raise Ignored(f"deployment action {str(payload.get('action'))[:40]!r} is not used")
    deployment = as_dict(payload.get("deployment"))
    if _made_by_chatops(deployment.get("payload")):
        raise Ignored("this deployment was created by chatops; its run exists already")
    deployment_id = deployment.get("id")
    if type(deployment_id) is not int or deployment_id <= 0:
        raise BadDelivery("deployment.id is not a positive integer")
    sha, ref = sha_of(deployment.get("sha")), validate_ref(deployment.get("ref"))
    environment = _environment(deployment.get("environment"))
    repository = repository_of(payload)
    name, app = _app_for(config, repository, environment)
    reply_to = ReplyTo(repository=app.repository, deployment_id=deployment_id)
    task = _task(deployment.get("task"), app.tasks)
    if task is None:
        raise UnknownTask(
            f"{name} has no task {str(deployment.get('task'))[:64]!r}; nothing was deployed. "
            f"Its tasks: {', '.join(['deploy', *sorted(app.tasks)])}.",
            reply_to,
        )
    command = Command("deploy", name, ref=ref, environment=environment, task=task)
    requester = Requester("github", login_of(as_dict(deployment.get("creator")).get("login")))
    request = Request(
        requester,
        command,
        key=f"github-deployment-{deployment_id}",
        sha=sha,
        deployment_id=deployment_id,
    )
    return [(request, reply_to)]


def _push(delivery: Delivery, config: Snapshot) -> list[tuple[Request, ReplyTo]]:
    payload = delivery.payload
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        raise Ignored("only branch pushes deploy")
    if payload.get("deleted") is not False or payload.get("after") == ZERO_SHA:
        raise Ignored("a deleted branch is never deployed")
    branch, sha = validate_ref(ref.removeprefix("refs/heads/")), sha_of(payload.get("after"))
    if delivery.delivery_id is None:
        raise BadDelivery("missing X-GitHub-Delivery header")
    repository = repository_of(payload)
    targets = [
        (name, env_name)
        for name, app in config.apps_for_repository(repository)
        for env_name in app.environments
        if (env := config.environment(name, env_name)) is not None
        and env.auto_deploy_branch == branch
        and env.auto_deploys_on() == AUTO_ON_PUSH
    ]
    if not targets:
        raise Ignored(f"no environment deploys each push to {branch} of {repository}")
    pusher = as_dict(payload.get("pusher")).get("name") or as_dict(payload.get("sender")).get(
        "login"
    )
    requester = Requester("github", login_of(pusher))
    return [
        (
            Request(
                requester,
                Command("deploy", name, ref=branch, environment=env_name),
                sha=sha,
                key=f"github-push-{delivery.delivery_id}-{name}-{env_name}",
            ),
            ReplyTo(),
        )
        for name, env_name in targets
    ]


def _app_for(config: Snapshot, repository: str, environment: str) -> tuple[str, App]:
    """The one app of ``repository`` that has ``environment``."""
    apps = config.apps_for_repository(repository)
    if not apps:
        raise Ignored(f"repository {repository} is not configured")
    matches = [(n, a) for n, a in apps if config.environment(n, environment) is not None]
    if not matches:
        raise Ignored(f"no app of {repository} has an environment {environment!r}")
    if len(matches) > 1:
        names = ", ".join(name for name, _ in matches)
        raise Ignored(f"apps {names} all deploy {repository} to {environment}; ambiguous")
    return matches[0]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _made_by_chatops(payload: Any) -> bool:
    """Whether a deployment payload carries our mark (GitHub may hand it back as a string)."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            return False
    return isinstance(payload, dict) and PAYLOAD_MARK in payload


def sha_of(value: Any) -> str:
    if not isinstance(value, str) or not HEX_SHA.fullmatch(value):
        raise CommandError("the commit sha is not 40 hex digits")
    return value


def _environment(value: Any) -> str:
    name = validate_name("environment", value)
    return ENVIRONMENT_ALIASES.get(name, name)


def repository_of(payload: dict[str, Any]) -> str:
    name = as_dict(payload.get("repository")).get("full_name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", name):
        raise Ignored("the payload names no repository")
    return name


def _task(value: Any, tasks: dict[str, str]) -> str | None:
    """GitHub's ``task`` (``deploy``, ``deploy:migrate`` or ``migrate``), or None when the app
    does not define it (heaven's ``deploy:lock``, ``deploy:migrations`` on an app without it).

    >>> _task("deploy", {}), _task(None, {}), _task("deploy:migrate", {"migrate": "m"})
    ('deploy', 'deploy', 'migrate')
    >>> print(_task("deploy:lock", {"migrate": "m"}))
    None
    """
    if value is None or value in ("", "deploy"):
        return "deploy"
    name = value.removeprefix("deploy:") if isinstance(value, str) else ""
    return name if name in tasks else None


def login_of(value: Any) -> str:
    return value if isinstance(value, str) and LOGIN.fullmatch(value) else "github"
