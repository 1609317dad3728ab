"""Runs that went silent, wherever they ran: found by Prefect, reported through the gateway.

Every process that runs a deploy or a rollback sends Prefect a heartbeat event
(:mod:`adapters.heartbeat`) every ``CHATOPS_HEARTBEAT_SECONDS`` (30). An automation on the
Prefect server (:func:`watch_silent_runs`, named :data:`AUTOMATION`) expects, after each
heartbeat of a deploy or rollback run, another heartbeat or the run's end within
:func:`~adapters.heartbeat.silence_seconds` (two heartbeats). When neither
comes, the run's process or its machine died, or the process froze; the automation then

1. marks the run Crashed, naming the cause, and
2. calls the gateway (``POST /prefect/silent-runs``, the webhook block :data:`WEBHOOK_BLOCK`
   with the secret header ``X-Chatops-Secret``), which frees the run's environment and tells
   GitHub and Slack (:func:`settle`). The gateway loads no flow code, so it keeps this module
   running beside it for that (``python -m chatops.dead_runs serve``).

The gateway believes nothing of the call but the run's id: it reads the run from Prefect. The
next deploy of the environment brings its hosts back to one release
(:func:`flows.steps.recover_hosts`).
"""

import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import CallWebhook, ChangeFlowRunState
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from adapters import heartbeat
from adapters.heartbeat import heartbeat_seconds, silence_seconds
from adapters.home import home
from chatops.settings import DEAD_RUN_SECRET, SILENT_RUNS_HEADER, SILENT_RUNS_PATH

AUTOMATION = "chatops: crash silent deploys"
"""The automation's name: :func:`watch_silent_runs` creates or updates it by this name."""
WEBHOOK_BLOCK = "chatops-silent-runs"
"""The Prefect webhook block that calls the gateway."""
WATCHED_FLOWS = ["deploy", "rollback"]
"""The flows whose runs act on hosts and hold an environment's slot."""
ENDS = ["Completed", "Failed", "Cancelled", "Crashed"]
WATCH_WAIT_SECONDS = 120.0
"""How long ``watch`` waits for the Prefect API to answer."""
logger = logging.getLogger("chatops.dead_runs")


def cause() -> str:
    """The Crashed state's message: what the silence means."""
    return (
        f"no heartbeat for {silence_seconds()} s: the process running it, or its machine, "
        "died or froze"
    )


def silent_run_trigger(silence: int) -> EventTrigger:
    """After a heartbeat of a deploy or rollback run: another heartbeat or its end within
    ``silence`` seconds, else fire (once per run)."""
    return EventTrigger(
        after={heartbeat.EVENT},
        expect={heartbeat.EVENT, *(f"prefect.flow-run.{end}" for end in ENDS)},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        match_related=ResourceSpecification(
            {"prefect.resource.role": "flow", "prefect.resource.name": WATCHED_FLOWS}
        ),
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=silence),
    )


def watch_silent_runs(gateway_url: str, secret: str | None = None) -> Automation:
    """Create, or bring up to date, the webhook block and the automation that finds silent runs
    and calls the gateway at ``gateway_url``; the secret defaults to this machine's
    ``$CHATOPS_HOME/secrets/dead-run-webhook`` (made on first use)."""
    secret = secret or home().secret(DEAD_RUN_SECRET, create=True)
    webhook = Webhook(
        method="POST",
        url=f"{gateway_url.rstrip('/')}{SILENT_RUNS_PATH}",
        headers={SILENT_RUNS_HEADER: secret, "Content-Type": "application/json"},
    )
    block_id = webhook.save(WEBHOOK_BLOCK, overwrite=True)
    wanted = Automation(
        name=AUTOMATION,
        description=(
            "Marks a deploy or rollback run Crashed when its process sent no heartbeat for "
            f"{silence_seconds()} s (heartbeat every {heartbeat_seconds():g} s), and tells the "
            "chatops gateway, which frees its environment and reports it."
        ),
        trigger=silent_run_trigger(silence_seconds()),
        actions=[
            ChangeFlowRunState(state=StateType.CRASHED, name="Crashed", message=cause()),
            CallWebhook(
                block_document_id=block_id,
                payload='{"flow_run": "{{ labels.prefect.resource.id }}"}',
            ),
        ],
    )
    try:
        existing = Automation.read(name=AUTOMATION)
    except ValueError:
        return wanted.create()
    wanted.id = existing.id
    wanted.update()
    return wanted


def wait_for_the_api(seconds: float) -> None:
    """Return once the Prefect API answers; raise after ``seconds`` without an answer
    (``chatops up`` starts ``watch`` beside the server, before it answers)."""
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while (problem := client.api_healthcheck()) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Prefect API did not answer within {seconds:g} s: {problem}"
                )
            time.sleep(0.5)


def heard_from_lately(client: SyncPrefectClient, run_id: UUID) -> bool:
    """Whether the server got a heartbeat of the run within the silence window."""
    recent = EventFilter(
        occurred=EventOccurredFilter(
            since=datetime.now(UTC) - timedelta(seconds=silence_seconds()),
            until=datetime.now(UTC) + timedelta(seconds=60),
        ),
        event=EventNameFilter(name=[heartbeat.EVENT]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    return bool(client.read_events(filter=recent, limit=1).events)


def settle(run_id: UUID) -> str:
    """Deal with a run the automation found silent; say what was done.

    ``unknown``: no such run of a deploy or rollback. ``finished``: it ended by itself (and
    reported that itself). ``alive``: it is not Crashed and sent a heartbeat within the window
    (a call nobody should have made: it is left alone). Otherwise it is (now) Crashed, its slot
    is free and it was reported (``reported``), unless someone had reported it already
    (``reported already``).
    """
    # The flow code loads here, not with the module: `chatops up` runs `watch` at every start.
    from flows.crash import free_slot
    from flows.report import report_crash

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
            flow = client.read_flow(run.flow_id)
        except ObjectNotFound:
            return "unknown"
        if flow.name not in WATCHED_FLOWS:
            return "unknown"
        if run.state is not None and run.state.is_final() and not run.state.is_crashed():
            return "finished"
        if run.state is None or not run.state.is_final():
            if heard_from_lately(client, run_id):
                return "alive"
            client.set_flow_run_state(run_id, Crashed(message=cause()), force=True)
            logger.warning("Run %s (%s) went silent: marked Crashed", run_id, run.name)
        run = client.read_flow_run(run_id)
    free_slot(str(run_id))
    message = (run.state.message if run.state else None) or cause()
    return "reported" if report_crash(run, message) else "reported already"


def serve() -> None:
    """Settle each run id read from stdin; answer ``outcome: <outcome>`` on stdout for each
    (``failed`` when settling raised). The gateway runs this (:class:`chatops.gateway.Settler`)."""
    for line in sys.stdin:
        try:
            outcome = settle(UUID(line.strip()))
        except Exception:  # one bad run must not end the process the gateway relies on
            logger.exception("Could not settle run %s", line.strip())
            outcome = "failed"
        print(f"outcome: {outcome}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m chatops.dead_runs serve``: :func:`serve` (the gateway runs this);
    ``... watch GATEWAY_URL [--wait]``: :func:`watch_silent_runs`, with ``--wait`` once the API
    answers (``chatops up`` runs it so, beside the server it starts)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    command, *rest = argv if argv is not None else sys.argv[1:]
    if command == "serve":
        serve()
    else:
        url, *options = rest
        if "--wait" in options:
            wait_for_the_api(WATCH_WAIT_SECONDS)
        watch_silent_runs(url)
        print(f"Silent deploy and rollback runs are reported through {url}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
