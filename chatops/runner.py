"""The runner: executes the deploy, rollback and verify flows as soon as runs of them exist.

``python -m chatops.runner`` (started by ``chatops up``) registers the ``deploy/chatops``,
``rollback/chatops`` and ``verify/chatops`` deployments with the Prefect server and executes
their runs, at most ``CHATOPS_RUNNER_LIMIT`` (8) at once. Starting a run is fast:

- the server's ``prefect.flow-run.Scheduled`` event for one of our deployments wakes the runner
  at once (a websocket subscription); polling every second stays on as the fallback;
- each run forks from a warm process that has imported Prefect and the flows already
  (:mod:`chatops.warmstart`), instead of a fresh interpreter.

Before it takes runs, it marks the runs a dead predecessor left behind as Crashed and reports
them (:func:`flows.crash.recover_orphans`). On SIGTERM it stops taking runs and cancels the
ones in flight, all at once: a deploy finishes its current batch, switches back what it switched,
and ends. Each run has ``CHATOPS_STOP_GRACE_SECONDS`` (600) from the SIGTERM to end; one still
running then is SIGKILLed (Prefect's own runner allows 30 s, less than one batch may take). A run
cancelled through Prefect (an abort) is stopped the same way, with the same grace.

For many machines, deploy the same flows to a work pool with prefect.yaml instead and start
workers there.
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from prefect.events.clients import get_events_subscriber
from prefect.events.filters import (
    EventAnyResourceFilter,
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
)
from prefect.runner import Runner
from prefect.runner._process_manager import ProcessManager
from prefect.settings import PREFECT_API_URL
from prefect.types._datetime import now

from adapters import prefect_tls
from adapters.home import home
from adapters.net import direct
from chatops import warmstart
from chatops.settings import (
    DEPLOY_DEPLOYMENT,
    NOOP_DEPLOYMENT,
    ROLLBACK_DEPLOYMENT,
    VERIFY_DEPLOYMENT,
    stop_grace_seconds,
)

DEFAULT_LIMIT = 8
POLL_SECONDS = 1.0
FLOW_MODULES = ["flows.deploy", "flows.rollback", "flows.verify", "flows.noop"]
logger = logging.getLogger("chatops.runner")


class GracefulRunner(Runner):
    """Prefect's runner, stopping its runs in flight at once, each within ``grace`` seconds."""

    def __init__(self, *, grace: float, **options: Any) -> None:
        super().__init__(**options)
        self.grace = grace

    async def cancel_all(self) -> None:
        """Cancel every run in flight concurrently, the way Prefect does (cancel intent, SIGTERM,
        then the Cancelled state and hooks), with one deadline ``grace`` seconds from now."""
        deadline = time.monotonic() + self.grace
        patient_kills(self._process_manager, lambda: deadline)
        cancelling = [self._cancel_one(run_id) for run_id in self._process_manager.flow_run_ids()]
        if cancelling:
            logger.info("Stopping %d runs; each has %.0f s to end", len(cancelling), self.grace)
        await asyncio.gather(*cancelling)

    async def _cancel_one(self, run_id: UUID) -> None:
        try:
            run = await self._client.read_flow_run(run_id)
            await self._cancellation_manager.cancel(run, state_msg="Runner is shutting down.")
        except Exception:
            logger.exception("Could not stop run %s", run_id)


async def serve(limit: int) -> None:
    """Serve the flows until SIGTERM."""
    from flows.crash import recover_orphans
    from flows.deploy import deploy
    from flows.noop import noop
    from flows.rollback import rollback
    from flows.verify import verify

    runner = GracefulRunner(
        name="chatops", query_seconds=POLL_SECONDS, limit=limit, grace=stop_grace_seconds()
    )
    served = [
        (deploy, DEPLOY_DEPLOYMENT, "Deploy a commit of an app to an environment."),
        (rollback, ROLLBACK_DEPLOYMENT, "Switch an environment back to an earlier release."),
        (verify, VERIFY_DEPLOYMENT, "Read every host of an app and report drift."),
        (noop, NOOP_DEPLOYMENT, "What a deploy would find and change, touching nothing."),
    ]
    ids = [
        await runner.aadd_flow(flow, name=name.split("/", 1)[1], tags=["chatops"], description=text)
        for flow, name, text in served
    ]
    patient_cancellation(runner, stop_grace_seconds())
    orphans = await asyncio.to_thread(recover_orphans, ids)
    if orphans:
        logger.warning("Reported %d runs orphaned by a previous runner", len(orphans))
    waker = asyncio.create_task(wake_on_events(runner, ids), name="wake-on-events")
    try:
        await runner.start()
    finally:
        waker.cancel()  # it must not outlive the runner, or the process never exits
        await asyncio.gather(waker, return_exceptions=True)


async def wake_on_events(runner: Runner, deployment_ids: Iterable[UUID]) -> None:
    """Poll for runs the moment the server says one of ours was scheduled.

    Bursts are coalesced (one poll running, one waiting). If the subscription breaks, the
    runner's own polling carries on and the subscription is retried.
    """
    resources = [f"prefect.deployment.{d}" for d in deployment_ids]
    wanted = asyncio.Event()

    async def poll() -> None:
        while True:
            await wanted.wait()
            wanted.clear()
            if runner.started and not runner.stopping:
                try:
                    await runner._get_and_submit_flow_runs()
                except Exception:
                    logger.exception("A poll for new runs failed")

    async def listen() -> None:
        while True:
            only_ours = EventFilter(
                occurred=EventOccurredFilter(since=now("UTC")),  # no backlog on connect
                event=EventNameFilter(name=["prefect.flow-run.Scheduled"]),
                any_resource=EventAnyResourceFilter(id=resources),
            )
            try:
                async with get_events_subscriber(filter=only_ours) as events:
                    async for event in events:
                        if any(r.id in resources for r in event.related):
                            wanted.set()
            except Exception as exc:
                logger.warning("Event subscription lost (%s); polling meanwhile", exc)
                await asyncio.sleep(5)

    await asyncio.gather(poll(), listen())


def patient_cancellation(runner: Runner, grace: float) -> None:
    """Give a cancelled run (an abort) ``grace`` seconds after its SIGTERM to end, not
    Prefect's fixed 30 s: it finishes its batch and switches the hosts back, which can take
    longer. Its end is noticed within 0.2 s (Prefect looks every grace/10 s).

    The runner makes its process manager when it starts, so the patch is put in place when a
    cancellation begins.
    """
    cancel_run = runner._cancel_run

    async def patient_cancel_run(flow_run: Any, state_msg: str | None = None) -> None:
        patient_kills(runner._process_manager, lambda: time.monotonic() + grace)
        await cancel_run(flow_run, state_msg)

    runner._cancel_run = patient_cancel_run  # type: ignore[method-assign]


def patient_kills(processes: ProcessManager, deadline: Callable[[], float]) -> None:
    """Make ``processes.kill`` wait for a run until ``deadline()`` (a monotonic time, asked when
    its SIGTERM is sent), then SIGKILL it.

    Prefect's cancellation passes its own fixed grace (30 s) and looks every grace/10 s; this
    looks every 0.2 s, so the runner goes on (or exits) as soon as the run has ended.
    """

    async def kill(flow_run_id: UUID, grace_seconds: float = 0.0, *, force: bool = False) -> None:
        handle = processes.get(flow_run_id)
        if handle is None:
            return
        if not force:
            handle.graceful_kill()  # ProcessLookupError (gone already) is the caller's to read
            until = deadline()
            while handle.is_alive() and time.monotonic() < until:
                await asyncio.sleep(0.2)
            if not handle.is_alive():
                return
            logger.warning("Run %s did not end within its grace; killing it", flow_run_id)
        with contextlib.suppress(OSError):
            handle.hard_kill()

    processes.kill = kill  # type: ignore[method-assign]


def wait_for_api(seconds: float = 120) -> None:
    """Wait until the Prefect API answers (``chatops up`` starts the server and us together)."""
    url = f"{PREFECT_API_URL.value()}/health"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), direct.open(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"chatops runner: the Prefect API at {url} did not answer in {seconds:.0f} s")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    home().ensure()  # mirrors, work trees and artifacts go there: readable by us alone, not builds
    prefect_tls.share()
    started = time.monotonic()
    warmstart.install(FLOW_MODULES)
    logger.info("Flows loaded in %.1f s", time.monotonic() - started)
    wait_for_api()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(os.environ.get("CHATOPS_RUNNER_LIMIT", DEFAULT_LIMIT))))


if __name__ == "__main__":  # each run's process imports this module again: keep it light
    main()
