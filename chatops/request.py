"""The one request model: who asks, from where, for what, and the one way it becomes a run.

Every entry point builds a :class:`Request`: the Slack handler from a slash command or a button,
the GitHub handler from a ``deployment`` or ``push`` event, the gateway's CLI endpoint from a
terminal line. :func:`resolve` then turns a deploy or rollback request into a :class:`Run` (the
Prefect deployment to start and its parameters) or refuses it with :class:`Refused`, whose
message is the answer for the person who asked. Everything is checked here, from the gateway's
in-memory configuration, before any run exists::

    app and environment known?  hosts and task known?  may this person deploy there?  locked?

The flows check the same things again when they start, and once more when the environment's
slot is theirs (:mod:`flows.target`). A deploy or rollback run carries the gateway's
``signature`` over its parameters and its request key (:mod:`adapters.run_signing`): a run started
any other way, "Run" in the Prefect UI included, is an anonymous UI run.
"""

import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from adapters.pull_request import PullRequestComment
from adapters.run_signing import claims, sign, signing_key
from blocks import App, UnknownTarget
from chatops.catalog import Snapshot
from chatops.grammar import Command, CommandError, split_app
from chatops.settings import (
    DEPLOY_DEPLOYMENT,
    NOOP_DEPLOYMENT,
    ROLLBACK_DEPLOYMENT,
    VERIFY_DEPLOYMENT,
)
from model.errors import ChatopsError
from model.locks import EnvironmentFrozen, EnvironmentLocked
from model.summary import PREVIOUS, run_tags, run_title
from model.target import NotAllowed, Target, check_access
from render.chat import describe_freeze, describe_lock, describe_refusal

Via = Literal["slack", "github", "cli"]


class Refused(ChatopsError):
    """A request that will not be carried out; the message is the reply, written for the user."""


class NotConfigured(Refused):
    """The request names an app or environment the gateway's copy of the configuration lacks
    (it may have been added a moment ago)."""


@dataclass(frozen=True)
class Requester:
    """Who asks and through which entry point: a Slack user id and channel id, a GitHub login,
    or the CLI user whose token the gateway checked."""

    via: Via
    user: str
    channel: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.user}>" if self.via == "slack" else self.user


@dataclass(frozen=True)
class Request:
    """One request: who (``requester``), what (``command``), and what an event already knows.

    ``key`` makes it idempotent: the same key never starts two runs (a Slack trigger id, a
    GitHub delivery or deployment id, a CLI invocation id). ``sha`` and ``deployment_id`` come
    with GitHub events: the exact commit, and the deployment to report to. ``pull_request`` is
    the comment a request typed on a pull request is answered in (a deploy keeps it current).
    ``confirmed`` says the requester confirmed the deploy already (a Deploy button, ``--yes``),
    for environments with ``confirm``; ``can_ask`` that they can be asked (a terminal without a
    TTY cannot).
    """

    requester: Requester
    command: Command
    key: str | None = None
    sha: str | None = None
    deployment_id: int | None = None
    pull_request: PullRequestComment | None = None
    confirmed: bool = False
    can_ask: bool = True


@dataclass(frozen=True)
class Run:
    """A flow run to start: which Prefect deployment, with which parameters, under which name."""

    deployment: str
    parameters: dict[str, Any]
    title: str
    key: str | None = None

    @property
    def app(self) -> str:
        return self.parameters["app"]

    @property
    def environment(self) -> str:
        return self.parameters.get("environment") or ""

    @property
    def tags(self) -> list[str]:
        """Deploys and rollbacks carry the app's and environment's tags (the history lists
        them); a verify or a dry run only says what it checked."""
        if self.deployment == VERIFY_DEPLOYMENT:
            return [f"verify:{self.app}"]
        if self.deployment == NOOP_DEPLOYMENT:
            return [f"noop:{self.app}"]
        return run_tags(self.app, self.environment)


def find_app(word: str | None, config: Snapshot) -> tuple[str, App, str | None]:
    """The app ``word`` names (a name or a repository) and the ref it carries, or Refused."""
    if not config.loaded:
        raise NotConfigured(
            "The configuration has not been loaded from Prefect yet; try again in a few seconds."
        )
    try:
        name, ref = split_app(word or "", {n: a.repository for n, a in config.apps.items()})
    except CommandError as exc:
        raise NotConfigured(str(exc)) from None
    return name, config.apps[name], ref


def find_target(command: Command, config: Snapshot, environment_required: bool = True) -> Target:
    """App, ref and environment of ``command``; the app's defaults fill in what is not said."""
    app_name, app, carried = find_app(command.app, config)
    if carried and command.ref:
        raise Refused(f"Two refs given: `{carried}` and `{command.ref}`; write `APP@REF`.")
    try:
        environment = app.environment_name(app_name, command.environment)
    except UnknownTarget as exc:
        raise NotConfigured(str(exc)) from None
    env = config.environment(app_name, environment)
    if env is None:
        raise NotConfigured(
            f"*{app_name}* lists `{environment}`, but its settings (block "
            f"`{app_name}-{environment}`) are missing. Ask whoever runs chatops."
        )
    return Target(app_name, app, environment, env, ref=carried or command.ref)


def not_allowed(target: Target, requester: Requester) -> str | None:
    """Why the allow-lists refuse ``requester`` changing ``target`` (deploy, roll back, lock),
    in chat words, or None."""
    refusal = target.environment.refusal(
        target.app_name, target.environment_name, requester.via, requester.user, requester.channel
    )
    return f":no_entry: {describe_refusal(refusal)}" if refusal else None


def check_request(
    target: Target, requester: Requester, config: Snapshot, rollback: bool = False
) -> None:
    """:func:`~model.target.check_access` against the gateway's copy of the locks and
    freezes, refusing in chat words with what to do instead."""
    app, environment = target.app_name, target.environment_name
    try:
        check_access(
            target,
            requester.user,
            requester.via,
            requester.channel,
            lock=config.lock(app, environment),
            freeze=config.freeze(environment),
            rollback=rollback,
        )
    except NotAllowed as refusal:
        raise Refused(f":no_entry: {describe_refusal(refusal)}") from None
    except EnvironmentFrozen as frozen:
        raise Refused(
            f"{describe_freeze(frozen.freeze)}\nTo undo a bad release meanwhile: "
            f"`rollback {app} in {environment}`."
        ) from None
    except EnvironmentLocked as locked:
        raise Refused(
            f":lock: {describe_lock(locked.lock)}\nA forced deploy does not pass a lock: ask its "
            f"holder, or take it over with `lock {environment} on {app} steal`."
        ) from None


def resolve(request: Request, config: Snapshot) -> Run:
    """The run a deploy, rollback or ``status … verify`` request asks for, or :class:`Refused`."""
    command, requester = request.command, request.requester
    if command.action == "status" and command.verify:
        return _verify_run(request, config)
    if command.action not in ("deploy", "rollback", "noop"):
        raise ValueError(f"{command.action} starts no run")
    target = find_target(command, config)
    try:
        hosts = target.environment.select_hosts(
            target.app_name, target.environment_name, command.hosts
        )
        if command.action == "deploy":
            target.app.task_command(target.app_name, command.task)
    except UnknownTarget as exc:
        raise Refused(str(exc)) from None
    if command.action == "noop":
        return _noop_run(request, target, hosts if command.hosts else None)
    check_request(target, requester, config, rollback=command.action == "rollback")
    common = {
        "app": target.app_name,
        "environment": target.environment_name,
        "requested_by": requester.user,
        "via": requester.via,
        "force": command.force,
        "hosts": hosts if command.hosts else None,
        "notify": {"channel": requester.channel} if requester.channel else None,
    }
    key = request.key or f"anon-{uuid.uuid4()}"
    if command.action == "rollback":
        parameters = signed("rollback", {**common, "ref": target.ref}, key)
        title = run_title(target.app_name, target.ref or PREVIOUS, None, target.environment_name)
        return Run(ROLLBACK_DEPLOYMENT, parameters, title, key)
    ref = target.ref or target.app.default_ref
    parameters = {
        **common,
        "ref": ref,
        "sha": request.sha,
        "deployment_id": request.deployment_id,
        "task": command.task,
    }
    if request.pull_request is not None:
        parameters["pull_request"] = asdict(request.pull_request)
    title = run_title(target.app_name, ref, request.sha, target.environment_name)
    return Run(DEPLOY_DEPLOYMENT, signed("deploy", parameters, key), title, key)


def signed(flow: str, parameters: dict[str, Any], key: str) -> dict[str, Any]:
    """``parameters`` with the gateway's ``signature`` over them and the run's request ``key``
    (which becomes the run's Prefect idempotency key)."""
    return {**parameters, "signature": sign(claims(flow, parameters, key), signing_key())}


def _noop_run(request: Request, target: Target, hosts: list[str] | None) -> Run:
    """``noop APP[@REF] to ENV``: a dry run, for whoever may deploy there. A lock or a freeze
    does not stop it: it is one of the things the dry run reports."""
    requester = request.requester
    if refusal := not_allowed(target, requester):
        raise Refused(refusal)
    ref = target.ref or target.app.default_ref
    parameters = {
        "app": target.app_name,
        "environment": target.environment_name,
        "ref": ref,
        "requested_by": requester.user,
        "via": requester.via,
        "hosts": hosts,
        "notify": {"channel": requester.channel} if requester.channel else None,
    }
    key = request.key or f"anon-{uuid.uuid4()}"
    title = "noop " + run_title(target.app_name, ref, None, target.environment_name)
    return Run(NOOP_DEPLOYMENT, signed("noop", parameters, key), title, key)


def _verify_run(request: Request, config: Snapshot) -> Run:
    """``status APP [in ENV] verify``: a run that reads every host of the app."""
    command = request.command
    if command.app is None:
        raise Refused("Say which app to verify, e.g. `status shop verify`.")
    app_name, app, _ = find_app(command.app, config)
    environment = None
    if command.environment is not None:
        environment = find_target(command, config).environment_name
    parameters = {"app": app_name, "environment": environment}
    title = f"verify {app_name}" + (f" in {environment}" if environment else "")
    return Run(VERIFY_DEPLOYMENT, parameters, title, request.key)
