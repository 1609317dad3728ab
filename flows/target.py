"""What a run points at, and whether it may go ahead: the app, the environment, the hosts.

Loading is where a run meets the configuration, so every mistake a person can make (unknown
app, unknown environment, a host the environment does not have, an unknown custom task) fails
the run here, before anything runs, with a message that says what is known. The gateway checks
the same things from its in-memory copy before it starts a run; this is the check that holds
for every entry point, "Run" in the Prefect UI included.

:func:`authorize` then applies the environment's allow-lists and its lock, read afresh.
"""

from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from blocks import App, Environment, UnknownTarget, environment_block_name
from blocks.errors import unknown
from tasks.locks import EnvironmentLocked, read_lock


class NotAllowed(RuntimeError):
    """The requester may not deploy to this environment (its allow-lists say so)."""


@dataclass(frozen=True)
class Target:
    """One app environment, resolved: blocks, hosts to deploy to, and the custom task command."""

    name: str
    app: App
    environment_name: str
    environment: Environment
    hosts: list[str]
    ref: str
    task_command: str | None


def load_app(name: str) -> App:
    try:
        return App.load(name)
    except (ValueError, ObjectNotFound):
        raise unknown("app", name, known_apps()) from None


def known_apps() -> list[str]:
    with get_client(sync_client=True) as client:
        documents = client.read_block_documents_by_type("chatops-app", include_secrets=False)
    return sorted(d.name for d in documents if d.name)


def load_target(
    app_name: str,
    environment: str,
    hosts: list[str] | None = None,
    task: str = "deploy",
    ref: str | None = None,
) -> Target:
    """Resolve a run's parameters; raise :class:`UnknownTarget` saying what is known instead."""
    app = load_app(app_name)
    name = app.environment_name(app_name, environment)
    try:
        env = Environment.load(environment_block_name(app_name, name))
    except (ValueError, ObjectNotFound):
        raise UnknownTarget(
            f"{app_name} lists environment {name!r}, but its block "
            f"{environment_block_name(app_name, name)!r} is missing: run chatops config apply"
        ) from None
    return Target(
        name=app_name,
        app=app,
        environment_name=name,
        environment=env,
        hosts=env.select_hosts(app_name, name, hosts),
        ref=ref or app.default_ref,
        task_command=app.task_command(app_name, task),
    )


def authorize(
    target: Target, requested_by: str, via: str, channel: str | None, force: bool
) -> None:
    """Refuse the run unless the requester may deploy here and no one else holds the lock."""
    refusal = target.environment.refusal(
        target.name, target.environment_name, via, requested_by, channel
    )
    if refusal:
        raise NotAllowed(refusal.replace("*", ""))
    lock = read_lock(target.name, target.environment_name)
    if lock is not None and lock.stops(requested_by or None, via, force):
        raise EnvironmentLocked(lock)
