"""Steps the deploy and rollback flows share: recovery, recording on GitHub, the rolling switch.

- :func:`hosts_flow` makes both flows (host tasks in threads, crash hooks), and :func:`in_turn`
  is what their steps run inside: the run recorded in case it crashes, its failure reported,
  the environment's slot held within the run's bound;
- :func:`check_hosts` reads every host while the commit is built, and :func:`recover_hosts`
  then brings every host of the environment back to one consistent release, if a run that died
  left some switched (its SWITCHING journal says so) or a host does not serve what ``current``
  names;
- :func:`record` creates (or attaches to) the GitHub deployment;
- :func:`roll_out` switches, restarts and health-checks the hosts batch by batch, as one
  transaction: when any batch fails, every host switched so far is switched back; when all
  succeed, each host records the release and prunes old ones (:func:`go_live`: that, then the
  success reported).

A graceful stop (SIGTERM to the process running the deploy) never leaves a batch half-switched:
during a batch it is held until the batch is over, and then the deploy stops and the
transaction switches every switched host back. An abort (``abort APP in ENV``: the run's state
set to Cancelling, "Aborted by …", on which the runner sends that SIGTERM) does the same, also
during the last batch, and the failure it reports names who aborted.
"""

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from prefect import Flow, flow, runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.transactions import transaction

from adapters import heartbeat, history, ssh, task_ledger
from blocks import Environment
from flows import bounds, crash
from flows.audiences import Notify
from flows.report import DeployReport
from flows.results import HostResults, gather, on_hosts
from flows.serial import one_at_a_time
from flows.target import Asked, check_afresh
from model.errors import DeployError
from model.releases import HostState, Release, recovery
from model.summary import aborted_by
from model.target import Target
from tasks.github import PAYLOAD_MARK, GitHubDeployment, record_deployment
from tasks.health import health_check
from tasks.hosts import activate, finish, inspect, recover


class Interrupted(DeployError, RuntimeError):
    """The deploy was asked to stop (SIGTERM); switched hosts are switched back."""


T = TypeVar("T")
HOST_THREADS = 64
"""Host tasks run at once: a host task mostly waits for SSH and the host, so a batch of up to
64 hosts goes in one wave (a 64-host deploy took 4 waves of 16 before)."""


def hosts_flow(name: str, run_name: Callable[[], str]) -> Callable[[Callable[..., T]], Flow]:
    """The flow decorator of a deploy or rollback: one thread per host task (up to
    :data:`HOST_THREADS` at a time), the crash hooks that report a run whose process died, a
    heartbeat while it runs (:mod:`adapters.heartbeat`: silence means the process died or froze),
    and the run's own account of its task runs, written as its last act
    (:mod:`adapters.task_ledger`)."""
    as_flow = flow(
        name=name,
        flow_run_name=run_name,
        task_runner=ThreadPoolTaskRunner(max_workers=HOST_THREADS),
        **crash.crash_hooks,
    )

    def decorate(body: Callable[..., T]) -> Flow:
        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> T:
            with heartbeat.beating():
                try:
                    return body(*args, **kwargs)
                finally:
                    task_ledger.write()

        return as_flow(run)

    return decorate


def record(
    report: DeployReport,
    target: Target,
    ref: str,
    *,
    task: str,
    force: bool,
    requested_by: str,
    deployment_id: int | None = None,
) -> GitHubDeployment | None:
    """Create (or attach to) the GitHub deployment; None when GitHub reporting is off.

    The deployment's payload carries our mark, so its ``deployment`` webhook starts nothing,
    and the id of this flow run, so a crash report can find it; and, for a deploy asked on a
    pull request, which one (``pull_request``: number and page).
    """
    if report.github is None:
        return None
    payload = {
        PAYLOAD_MARK: {"flow_run_id": str(runtime.flow_run.id), "requested_by": requested_by}
    }
    if report.pull_request is not None:  # which pull request asked for it
        pull = report.pull_request
        payload["pull_request"] = {"number": pull.number, "url": pull.url}
    return record_deployment(
        report.github,
        target.app.repository,
        ref,
        target.environment_name,
        task_name=task,
        payload=payload,
        description=f"{requested_by or 'chatops'} via chatops",
        required_contexts=[] if force else target.environment.required_contexts,
        production=target.environment.production,
        deployment_id=deployment_id,
    )


Checks = dict[str, PrefectFuture]
"""Every host's check, under way (see :func:`check_hosts`)."""
Finishing = dict[str, PrefectFuture]
"""Every host's :func:`~tasks.hosts.finish`, under way (see :func:`roll_out`)."""


def check_hosts(target: Target) -> Checks:
    """Start reading every host of the environment (it goes on while the commit is built)."""
    return {h: inspect.submit(target.environment, h) for h in target.environment.hosts}


def recover_hosts(report: DeployReport, target: Target, checks: Checks) -> HostResults:
    """Wait for the hosts' checks; bring back any a dead run left inconsistent.

    Returns each host's :class:`~model.releases.HostState`, after any recovery.
    """
    env = target.environment
    with report.step("check hosts"):
        found = on_hosts("check", checks)
        states: dict[str, HostState] = {h: state for h, (state, _) in found.items()}
        succeeded = runs_that_succeeded(
            {s.switching.run_id for s in states.values() if s.switching}
        )
        plans = {
            host: recovery(
                state, serving, (state.switching.run_id in succeeded) if state.switching else False
            )
            for host, (state, serving) in found.items()
        }
        todo = {h: p for h, p in plans.items() if p.action != "none"}
        if todo:
            report.logger.warning("Recovering %s before going on", ", ".join(todo))
            on_hosts("recover", {h: recover.submit(env, h, states[h], p) for h, p in todo.items()})
            again = on_hosts("check", {h: inspect.submit(env, h) for h in todo})
            states.update({h: state for h, (state, _) in again.items()})
    return HostResults(states)


def runs_that_succeeded(run_ids: set[str]) -> set[str]:
    """Which of ``run_ids`` (flow runs named in SWITCHING journals) succeeded on every host.

    A run whose process died after it recorded its success (and so may have told GitHub and
    Slack "success") counts: success is final, its hosts keep the release.
    """
    done = set()
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            try:
                run = client.read_flow_run(run_id)
            except Exception:  # an unknown or unreadable run did not succeed
                continue
            if run.state_type == StateType.COMPLETED:
                done.add(run_id)
    return done | history.runs_that_deployed(run_ids - done)


@contextmanager
def in_turn(
    report: DeployReport, asked: Asked, notify: Notify | None, rollback: bool = False
) -> Iterator[None]:
    """What the steps of a deploy or rollback run inside: the run recorded in case it crashes,
    its failure reported, SSH sessions closed after it, and the environment's slot held within
    the run's bound.

    Who asks is authorized before waiting for the slot and again once it is held: a lock, a
    freeze (not for a ``rollback``) or an allow-list changed while the run waited behind
    another stops it. While it waits, the report shows who holds the slot.
    """
    target, channel = report.target, notify.channel if notify else None
    who = (asked.requested_by, asked.via, channel)
    with crash.recorded(), report.failures(), ssh.sessions():
        check_afresh(target, *who, rollback=rollback)
        with (
            one_at_a_time(
                target.app_name, target.environment_name, asked.requested_by, report.waiting_for
            ),
            bounds.bounded_run(bounds.run_timeout(target.app, target.environment), report.at),
        ):
            check_afresh(target, *who, again=True, rollback=rollback)
            yield


def roll_out(
    report: DeployReport, target: Target, release: Release, states: HostResults
) -> Finishing:
    """Switch, restart and health-check the hosts batch by batch, then start recording.

    All of it is one transaction: when any batch fails (or the deploy is stopped), every host
    switched so far (this batch and the earlier ones) is switched back to its previous release
    and restarted. Each host's health check starts as soon as that host has restarted. When all
    succeed, every host starts recording the release as good and dropping what it no longer
    keeps (:func:`~tasks.hosts.finish`), while the flow reports the result; :func:`finished`
    waits for that.
    """
    env = target.environment
    run_id = str(runtime.flow_run.id)
    try:
        with stop_between_batches() as stopping, transaction(), bounds.disarmed_on_failure():
            for number, batch in enumerate(batches(target.hosts, env.batch_size), 1):
                if stopping.is_set():
                    raise Interrupted(f"stopped before batch {number} ({', '.join(batch)})")
                with stopping.held():
                    switch_batch(report, env, batch, release, run_id)
            if stopping.is_set() and abort_requester():
                raise Interrupted("stopped after the last batch")
    except Interrupted as exc:
        if by := abort_requester():
            raise Interrupted(
                f"aborted by {by} ({exc}); switched hosts were switched back"
            ) from None
        raise
    bounds.disarm()  # every host runs the release: from here on the run is a success
    if not env.health_url:
        report.mark("health check", "skipped")
    return {h: finish.submit(env, h, release, run_id, states[h]) for h in target.hosts}


def abort_requester() -> str | None:
    """Who aborted this run (its state is Cancelling, "Aborted by …"), or None."""
    run_id = runtime.flow_run.id
    if not run_id:
        return None
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
    except Exception:  # Prefect unreachable: it is a stop like any other
        return None
    return aborted_by(state.message) if state and state.is_cancelling() else None


def go_live(report: DeployReport, target: Target, release: Release, states: HostResults) -> None:
    """:func:`roll_out` the release, report the success, then wait for the hosts' records."""
    finishing = roll_out(report, target, release, states)
    report.succeeded()
    finished(report, release, finishing)


def finished(report: DeployReport, release: Release, finishing: Finishing) -> None:
    """Wait for the hosts' records; one that failed is written by the next deploy's check."""
    for host, problem in gather(finishing).failed.items():
        report.logger.warning("Could not record %s on %s: %s", release.id, host, problem)


def switch_batch(
    report: DeployReport, env: Environment, batch: list[str], release: Release, run_id: str
) -> None:
    """Activate every host of one batch; health-check each one as soon as it is active."""
    checks: dict[str, PrefectFuture] = {}
    activating: dict[PrefectFuture, str] = {}
    try:
        _switch_batch(report, env, batch, release, run_id, activating, checks)
    except bounds.RunTimedOut:
        # What the batch started ends by the run's bound (plus grace) too: wait for it, so a
        # host whose restart hung is switched back by its own task before the slot frees.
        bounds.disarm()
        gather({**{h: f for f, h in activating.items()}, **checks})
        raise


def _switch_batch(
    report: DeployReport,
    env: Environment,
    batch: list[str],
    release: Release,
    run_id: str,
    activating: dict[PrefectFuture, str],
    checks: dict[str, PrefectFuture],
) -> None:
    with report.step("activate"):
        restart_timeout = bounds.capped(env.command_timeout)
        for h in batch:
            activating[activate.submit(env, h, release, run_id, restart_timeout)] = h
        for future in as_completed(list(activating)):
            host = activating[future]
            try:
                future.result()
            except Exception:  # reported with the others below
                continue
            if env.health_url:
                checks[host] = health_check.submit(
                    env.health_url, host, release.sha, bounds.capped(env.health_timeout)
                )
        activated = gather({h: f for f, h in activating.items()})
        if activated.failed:
            gather(checks)  # the batch's health checks end before anything is switched back
            activated.raise_for_failures("activate")
    if env.health_url:
        with report.step("health check"):
            on_hosts("health check", checks)


def batches(hosts: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(hosts), size):
        yield hosts[start : start + size]


class StopRequest(threading.Event):
    """Set by SIGTERM. While :meth:`held`, the signal only sets it; outside, it raises."""

    def __init__(self) -> None:
        super().__init__()
        self._holding = False

    @contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.set()
        if not self._holding:
            raise Interrupted("stopped between batches (SIGTERM)")


@contextmanager
def stop_between_batches() -> Iterator[StopRequest]:
    """Defer SIGTERM to the end of the current batch while the block runs (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGTERM, request.on_signal)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)
