"""A running deploy or rollback tells the Prefect server it is alive: the heartbeat that
:mod:`chatops.dead_runs` watches for.

:func:`beating` sends the event :data:`EVENT` about the flow run it is entered in, at once and
then every :func:`heartbeat_seconds` (``CHATOPS_HEARTBEAT_SECONDS``), from a thread of the run's
own process: a process that dies or freezes (SIGSTOP, a machine gone) falls silent with its run.
The event names the run and its flow the way Prefect's own flow-run events do, so one automation
can match both. Prefect has a heartbeat of its own (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``), but
it allows no period under 30 s; this one's period is a setting of ours, which tests shorten.
"""

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.context import FlowRunContext
from prefect.events import emit_event

EVENT = "chatops.run.heartbeat"
HEARTBEAT_SECONDS = 30.0
"""Default of ``CHATOPS_HEARTBEAT_SECONDS``."""
LEAST_SILENCE_SECONDS = 10.0
"""The shortest window Prefect's automations accept for an expected event."""
logger = logging.getLogger("chatops.heartbeat")


def heartbeat_seconds() -> float:
    """How often a run's process says it is alive (``CHATOPS_HEARTBEAT_SECONDS``, above 0)."""
    text = os.environ.get("CHATOPS_HEARTBEAT_SECONDS", str(HEARTBEAT_SECONDS))
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(f"CHATOPS_HEARTBEAT_SECONDS must be seconds above 0, not {text!r}")
    return seconds


def silence_seconds(heartbeat: float | None = None) -> int:
    """How long a run may stay silent (no heartbeat, no end) before it is taken for dead: two
    heartbeats (of ``heartbeat`` seconds, by default :func:`heartbeat_seconds`), so one late
    heartbeat on a loaded machine is no false alarm; at least :data:`LEAST_SILENCE_SECONDS`.

    >>> silence_seconds(30), silence_seconds(7.5), silence_seconds(2)
    (60, 15, 10)
    """
    period = heartbeat_seconds() if heartbeat is None else heartbeat
    return round(max(2 * period, LEAST_SILENCE_SECONDS))


@contextmanager
def beating() -> Iterator[None]:
    """Send :data:`EVENT` about the current flow run until the block ends (nothing outside a
    flow run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield
        return
    run, flow = context.flow_run, context.flow
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run.id}",
        "prefect.resource.name": run.name,
    }
    related = [
        {
            "prefect.resource.id": f"prefect.flow.{run.flow_id}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": flow.name if flow else "",
        }
    ]
    stopped = threading.Event()
    thread = threading.Thread(
        target=_beat,
        args=(resource, related, heartbeat_seconds(), stopped),
        name=f"heartbeat of {run.name}",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()


def _beat(resource: dict, related: list[dict], period: float, stopped: threading.Event) -> None:
    while True:
        try:
            emit_event(event=EVENT, resource=resource, related=related)
        except Exception:  # a beat lost is a late alarm at worst; a thread lost, a false one
            logger.exception("Could not send a heartbeat of %s", resource["prefect.resource.id"])
        if stopped.wait(period):
            return
