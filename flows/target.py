"""What a run points at, and whether it may go ahead: the app, the environment, the hosts.

Loading is where a run meets the configuration, so every mistake a person can make (unknown
app, unknown environment, a host the environment does not have, an unknown custom task) fails
the run here, before anything runs, with a message that says what is known. The gateway checks
the same things from its in-memory copy before it starts a run; this is the check that holds
for every entry point, "Run" in the Prefect UI included.

:func:`vouch` comes first: only a run the gateway signed (:mod:`adapters.run_signing`) is
believed about who asked, how, and with force; any other run is a UI run by "prefect-ui",
which :func:`admit` lets in only where the environment allows UI runs; :func:`check_afresh` then
applies the environment's allow-lists and its lock, read afresh (again once the environment's
slot is taken: a lock taken while a run waited stops it).
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger

from adapters.locks import read_freeze, read_lock
from adapters.run_signing import claims, problem, signing_key
from blocks import App, Environment, UnknownTarget, environment_block_name
from blocks.documents import saved_documents
from blocks.environment import VIA_UI
from model.errors import unknown
from model.target import NotAllowed, Target, check_access

UI_REQUESTER = "prefect-ui"
"""Who an unsigned run (Prefect UI or API) is by, whatever its parameters say."""


@dataclass(frozen=True)
class Asked:
    """Who a run is for and how it was asked, as far as the run can be trusted.

    ``signed`` runs carry what the gateway signed; others are UI runs: by ``prefect-ui``,
    via ``ui``, never forced, attached to no GitHub deployment.
    """

    requested_by: str
    via: str
    force: bool
    deployment_id: int | None
    signed: bool


def own_request_key() -> str | None:
    """This flow run's Prefect idempotency key: the gateway's request key, or None."""
    context = FlowRunContext.get()
    return context.flow_run.idempotency_key if context and context.flow_run else None


def vouch(flow: str, parameters: Mapping[str, Any], signature: str | None) -> Asked:
    """Believe ``parameters`` about the requester only when the gateway signed them for this
    very run (its idempotency key); otherwise the run is a UI run, and its log says why."""
    why = problem(claims(flow, parameters, own_request_key()), signature, signing_key(False))
    logger = get_run_logger()
    if why is None:
        logger.info(
            "Signed by the gateway: asked by %s via %s%s",
            parameters.get("requested_by"),
            parameters.get("via"),
            " (forced)" if parameters.get("force") else "",
        )
        return Asked(
            str(parameters.get("requested_by") or ""),
            str(parameters.get("via") or "ui"),
            bool(parameters.get("force")),
            parameters.get("deployment_id"),
            signed=True,
        )
    logger.warning(
        "Not started by the gateway (%s): this is a UI run by %s, without force, and its "
        "requested_by, via, force and deployment_id parameters are ignored",
        why,
        UI_REQUESTER,
    )
    return Asked(UI_REQUESTER, VIA_UI, False, None, signed=False)


def admit(target: "Target", asked: Asked) -> None:
    """Refuse a UI run where the environment does not take them (``allow_ui_runs``)."""
    if asked.signed or target.environment.ui_runs_allowed():
        return
    app, env = target.app_name, target.environment_name
    raise NotAllowed(
        f"{app} {env} does not take runs started in the Prefect UI or API (allow_ui_runs). "
        f"Deploy through the gateway instead: /deploy {app} to {env} in Slack, chatops deploy "
        f"{app} to {env} in a terminal, or a GitHub deployment."
    )


def load_app(name: str) -> App:
    try:
        return App.load(name)
    except (ValueError, ObjectNotFound):
        raise unknown("app", name, known_apps()) from None


def known_apps() -> list[str]:
    with get_client(sync_client=True) as client:
        return sorted(d["name"] for d in saved_documents(client, [App.get_block_type_slug()]))


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
        app_name=app_name,
        app=app,
        environment_name=name,
        environment=env,
        ref=ref or app.default_ref,
        hosts=env.select_hosts(app_name, name, hosts),
        task_command=app.task_command(app_name, task),
    )


def check_afresh(
    target: Target,
    requested_by: str,
    via: str,
    channel: str | None,
    again: bool = False,
    rollback: bool = False,
) -> None:
    """Refuse the run unless the requester may deploy here, no one else holds the lock (force
    does not pass a lock: only its holder, or whoever takes it over, deploys) and, unless it
    is a ``rollback``, the environment is not frozen.

    ``again`` reads the environment's allow-lists afresh too (the lock is always read afresh):
    for the check once the run's turn has come, after they may have changed.
    """
    if again:
        environment = Environment.load(
            environment_block_name(target.app_name, target.environment_name)
        )
        target = replace(target, environment=environment)
    check_access(
        target,
        requested_by,
        via,
        channel,
        lock=read_lock(target.app_name, target.environment_name),
        freeze=None if rollback else read_freeze(target.environment_name),
        rollback=rollback,
    )
