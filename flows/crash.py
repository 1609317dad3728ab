"""When the process running a deploy or rollback dies: say so, and free the environment.

Inside the dead process nothing can run any more, so this happens outside it:

- the runner notices its child died, marks the run Crashed and calls the flow's
  ``on_crashed`` hook, :func:`crashed`, in its own process;
- a runner that died *with* its children finds their runs when it starts again
  (:func:`recover_orphans`): every run of its deployments still Running or Pending whose process
  is gone (each run records its process in ``$CHATOPS_HOME/runs/``) is marked Crashed and
  reported the same way, and so is every run that ended in the last hour without anyone telling
  (the runner died just before its hook, or in it: :func:`untold`);
- a run whose process (or machine) died anywhere, or froze, stops sending heartbeats: Prefect's
  automation marks it Crashed and the gateway frees and reports it (:mod:`chatops.dead_runs`).

Each run is reported once, by whichever notices first (:func:`flows.report.claim_report`).

Either way GitHub gets ``error`` on the deployment and Slack a message, unless the run had
recorded its success (then it stays ``success``: its hosts keep the release); the environment's
concurrency slot is released at once (:func:`flows.serial.release_dead`), and the next run on
the environment brings every host back to one consistent release
(:func:`flows.steps.recover_hosts`).
"""

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import Crashed

from adapters.home import home
from adapters.logs import run_logger
from adapters.processes import running, this_process
from flows.report import REPORTED_LABEL, abandoned, report_crash
from flows.serial import release_dead
from model.summary import aborted_by

UNFINISHED = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]
ENDED_BADLY = [StateType.CRASHED, StateType.CANCELLED]
UNTOLD_WITHIN = 3600
"""How far back a starting runner looks for ended runs whose reporter died while telling."""


def crashed(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Prefect's ``on_crashed``/``on_cancellation`` hook: free the environment's slot and
    report the run as ``error``.

    The runner calls it once the run's process has ended; should it be called inside a run's
    own process (still recorded as alive), the run releases its slot itself on the way out. An
    aborted run is reported as aborted, naming who did it: the runner reads the run just before
    stopping it, so ``flow_run.state`` is still the Cancelling state the abort set.
    """
    run_id = str(flow_run.id)
    if not alive(run_id):
        free_slot(run_id)
    by = aborted_by(flow_run.state.message) if flow_run.state else None
    report_crash(flow_run, state.message or f"the run ended {state.name}", aborted=by)
    _record(run_id).unlink(missing_ok=True)


def free_slot(run_id: str) -> None:
    """Release the slot of the dead run ``run_id``; a failure only leaves it to its lease."""
    try:
        if release_dead(run_id):
            run_logger(__name__).info("Released the environment's slot of dead run %s", run_id)
    except Exception as exc:  # the lease still runs out a minute later
        run_logger(__name__).warning("Could not release the slot of run %s: %s", run_id, exc)


crash_hooks: dict[str, Any] = {"on_crashed": [crashed], "on_cancellation": [crashed]}
"""Keyword arguments for ``@flow``: the hooks every deploying flow has."""


def _record(run_id: str) -> Path:
    return home().root / "runs" / f"{run_id}.pid"


@contextlib.contextmanager
def recorded() -> Iterator[None]:
    """Note this run's process while the block runs, so a restarted runner can tell whether it
    is still alive."""
    run_id = runtime.flow_run.id
    path = _record(str(run_id)) if run_id else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{this_process()}\n")
    try:
        yield
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def alive(run_id: str) -> bool:
    """Whether the process that recorded ``run_id`` still runs (on this machine)."""
    try:
        return running(_record(run_id).read_text())
    except OSError:
        return False


def recover_orphans(deployment_ids: list[UUID]) -> list[str]:
    """Mark Crashed, and report, the unfinished runs of these deployments whose process is
    gone; report the ended ones whose reporter died while telling (:func:`untold`); return the
    ids of both. Called by a runner before it starts taking runs."""
    logger = run_logger(__name__)
    ours = DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids))
    unfinished = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED))
    )
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=ours, flow_run_filter=unfinished)
        # Runs a worker picked up are that worker's to report (docs/scale-out.md).
        orphans = [r for r in runs if not r.work_pool_name and not alive(str(r.id))]
        for run in orphans:
            why = "the process running it died (found when the runner started again)"
            client.set_flow_run_state(run.id, Crashed(message=why))
            logger.warning("Run %s (%s) was orphaned: marked Crashed", run.id, run.name)
            free_slot(str(run.id))
            report_crash(run, why)
            _record(str(run.id)).unlink(missing_ok=True)
        unheard = untold(client, ours)
    for run in unheard:
        logger.warning("Run %s (%s) ended untold: its reporter died; telling now", run.id, run.name)
        if run.state is not None:
            crashed(None, run, run.state)
    return [str(run.id) for run in [*orphans, *unheard]]


def untold(client: Any, ours: DeploymentFilter) -> list[FlowRun]:
    """Runs that ended in the last :data:`UNTOLD_WITHIN` seconds whose end nobody told: Crashed
    and never claimed, or Crashed or Cancelled and claimed by a process that died before it
    told everyone (a runner killed just before or in the middle of its crash hook)."""
    since = datetime.now(UTC) - timedelta(seconds=UNTOLD_WITHIN)
    ended = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ENDED_BADLY)),
        end_time=FlowRunFilterEndTime(after_=since),
    )
    runs = client.read_flow_runs(deployment_filter=ours, flow_run_filter=ended)
    return [run for run in runs if not run.work_pool_name and _untold(run)]


def _untold(run: FlowRun) -> bool:
    label = (run.labels or {}).get(REPORTED_LABEL)
    if label is None:  # a crash nobody claimed: the runner died before its hook could
        return run.state is not None and run.state.type == StateType.CRASHED
    return abandoned(str(label))
