"""When the process running a deploy or rollback dies: say so, and free the environment.

Inside the dead process nothing can run any more, so this happens outside it:

- the runner notices its child died, marks the run Crashed and calls the flow's
  ``on_crashed`` hook, :func:`crashed`, in its own process;
- a runner that died *with* its children finds their runs when it starts again
  (:func:`recover_orphans`): every run of its deployments still Running or Pending whose process
  is gone (each run records its process in ``$CHATOPS_HOME/runs/``) is marked Crashed and
  reported the same way;
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
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import Crashed

from adapters.home import home
from adapters.logs import run_logger
from flows.report import report_crash
from flows.serial import release_dead
from model.summary import aborted_by

UNFINISHED = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]


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


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), so a reused pid is not mistaken
    for it; None when there is no such process (or only its zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


@contextlib.contextmanager
def recorded() -> Iterator[None]:
    """Note this run's process while the block runs, so a restarted runner can tell whether it
    is still alive."""
    run_id = runtime.flow_run.id
    path = _record(str(run_id)) if run_id else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()} {_started(os.getpid())}\n")
    try:
        yield
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def alive(run_id: str) -> bool:
    """Whether the process that recorded ``run_id`` still runs (on this machine)."""
    try:
        pid, started = _record(run_id).read_text().split()
    except (OSError, ValueError):
        return False
    return _started(int(pid)) == started


def recover_orphans(deployment_ids: list[UUID]) -> list[str]:
    """Mark Crashed, and report, the unfinished runs of these deployments whose process is
    gone; return their ids. Called by a runner before it starts taking runs."""
    logger = run_logger(__name__)
    unfinished = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED))
    )
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids)),
            flow_run_filter=unfinished,
        )
        # Runs a worker picked up are that worker's to report (docs/scale-out.md).
        orphans = [r for r in runs if not r.work_pool_name and not alive(str(r.id))]
        for run in orphans:
            why = "the process running it died (found when the runner started again)"
            client.set_flow_run_state(run.id, Crashed(message=why))
            logger.warning("Run %s (%s) was orphaned: marked Crashed", run.id, run.name)
            free_slot(str(run.id))
            report_crash(run, why)
            _record(str(run.id)).unlink(missing_ok=True)
    return [str(run.id) for run in orphans]
