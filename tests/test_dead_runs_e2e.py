"""Runs that die or freeze are found by Prefect's silent-run automation, reported, and free
their environment, wherever they ran.

Every process here sends heartbeats every 5 s (``CHATOPS_HEARTBEAT_SECONDS``; 30 by default),
so the automation's window is 10 s (60 by default): the tests wait for what a user waits for, at
a sixth of the default's pace.

- On the scale-out setup of tests/test_scale_out.py (PostgreSQL, two process workers) plus a
  gateway process and fake GitHub and Slack: a deploy is held in its restart on the first host,
  and the worker running it is SIGKILLed together with every process of it (a machine dying).
  Within :data:`BOUND` the run must be Crashed, GitHub must have ``error`` on its deployment and
  Slack a message naming the run; the next deploy of the environment runs on the other worker and
  brings both hosts to one release.
- With ``chatops up``: a deploy longer than the automation's window ends Completed and nobody is
  told of a crash (no false alarm); a deploy whose process is frozen (SIGSTOP) is Crashed and
  reported within :data:`BOUND`, once, even when its process is killed afterwards and the runner
  reports its end too.

Each prints "measured: ..." lines with the times for docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from adapters import heartbeat
from blocks import App, Environment, GitHubAccess, SlackAccess
from chatops.dead_runs import watch_silent_runs
from flows.report import REPORTED_LABEL
from tasks.github import PAYLOAD_MARK
from tests import test_crash_e2e, test_scale_out
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import DEPLOYS
from tests.shop import DEPLOY_PATH
from tests.test_crash_e2e import Bed, delay_restart, serves, until
from tests.test_scale_out import (
    API_AUTH,
    Server,
    Worker,
    _alive,
    _parents,
    base_env,
    free_port,
    port_of,
    restart_command,
    spawn,
    stop,
    tail,
)
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost

pytestmark = pytest.mark.e2e
# The fixtures of the modules this one builds on.
bed = test_crash_e2e.bed
state = test_scale_out.state
prefect_on_postgres = test_scale_out.prefect_on_postgres
workers = test_scale_out.workers
APP = "shop1"
SILENCE = heartbeat.silence_seconds(float(test_scale_out.HEARTBEAT_SECONDS))
"""The automation's window: 10 s."""
BOUND = SILENCE + 30
"""Death (or freeze) to everyone told, at most: the window, plus the heartbeat that may have
just come before, the automation's periodic check and the gateway's report."""
SECRET = "silent-runs-secret-of-the-test"
SLOW_START = (
    f'(sleep {SILENCE + 5}; exec {DEPLOY_PATH}/bin/real-restart "$@") >/dev/null 2>&1 & exit 0'
)
"""A restart whose app answers after longer than the window."""


@pytest.fixture(autouse=True)
def short_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """For this process (the automation it creates) and the ``chatops up`` it starts."""
    monkeypatch.setenv("CHATOPS_HEARTBEAT_SECONDS", test_scale_out.HEARTBEAT_SECONDS)


# --- the scale-out setup: a gateway, the automation, one app -----------------------------------


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path


@pytest.fixture
def gateway_process(prefect_on_postgres: Server, state: Path) -> Iterator[Gateway]:
    """``python -m chatops.gateway`` with the silent-run secret in its ``CHATOPS_HOME``."""
    home = state / "gateway"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "dead-run-webhook").write_text(SECRET + "\n")
    port = free_port()
    env = base_env(
        state,
        PREFECT_API_URL=prefect_on_postgres.api_url,
        PREFECT_API_AUTH_STRING=API_AUTH,
        PREFECT_HOME=str(home / "prefect"),
        CHATOPS_HOME=str(home),
        CHATOPS_GATEWAY_PORT=str(port),
        CHATOPS_HEARTBEAT_SECONDS=test_scale_out.HEARTBEAT_SECONDS,
    )
    log = state / "gateway.log"
    process = spawn([sys.executable, "-m", "chatops.gateway"], env, log, cwd=state)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, f"gateway exited\n{tail(log)}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        assert time.monotonic() < deadline, f"gateway not healthy\n{tail(log)}"
        time.sleep(0.3)
    try:
        yield Gateway(url, log)
    finally:
        stop(process)


HOLD = f"/srv/app/{APP}/hold"
HELD = f"/srv/app/{APP}/held"


def held_restart() -> str:
    """While the hold file exists, the restart waits (a long restart) and then gives up: a
    restart the killed run left behind on a host must not act after the test let it go."""
    return (
        f"if [ -e {HOLD} ]; then touch {HELD}; "
        f"for i in $(seq 300); do [ -e {HOLD} ] || exit 1; sleep 1; done; exit 1; fi; "
        + restart_command(APP)
    )


def save_app(repo: AppRepo, hosts: list[TestHost], ssh_key: SshKey) -> None:
    App(
        repository="acme/shop",
        clone_url=repo.url,
        default_ref="main",
        default_environment="staging",
        environments=["staging"],
    ).save(APP, overwrite=True)
    Environment(
        hosts=[h.address for h in hosts],
        ssh_user="root",
        ssh_private_key=ssh_key.private_text,
        known_hosts=[h.known_hosts_line for h in hosts],
        deploy_path=f"/srv/app/{APP}",
        restart_command=held_restart(),
        health_url=f"http://{{host}}:{port_of(APP)}/REVISION",
        health_timeout=60,
        batch_size=1,
    ).save(f"{APP}-staging", overwrite=True)


def start_deploy(ref: str) -> UUID:
    parameters = {"app": APP, "environment": "staging", "ref": ref, "notify": {"channel": DEPLOYS}}
    run = asyncio.run(arun_deployment("deploy/chatops", parameters=parameters, timeout=0))
    return run.id


def read_run(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def wait_final(run_id: UUID, seconds: float, logs: list[Path]) -> FlowRun:
    deadline = time.monotonic() + seconds
    while True:
        run = read_run(run_id)
        if run.state and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"{run.state_name} after {seconds} s\n" + "\n".join(
            tail(log) for log in logs
        )
        time.sleep(0.5)


def descendants(pid: int) -> set[int]:
    parents = _parents()
    found = {pid}
    while True:
        more = {p for p, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


def kill_machine(worker: Worker) -> None:
    """The worker and every process under it stop at once and die, as if its machine did."""
    tree = descendants(worker.process.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.process.wait(10)


def when(condition: Callable[[], object], since: float, what: str) -> float:
    """Seconds from ``since`` (monotonic) until ``condition`` holds; fails after :data:`BOUND`."""
    until(condition, BOUND - (time.monotonic() - since), what)
    return time.monotonic() - since


def github_states(github: FakeGitHub, run_id: UUID) -> list[str]:
    for deployment in github.deployments:
        payload = deployment.get("payload") or {}
        mark = payload.get(PAYLOAD_MARK) if isinstance(payload, dict) else None
        if isinstance(mark, dict) and mark.get("flow_run_id") == str(run_id):
            return [s["state"] for s in github.statuses(deployment["id"])]
    return []


def window_report(run_id: UUID, dead_at: float) -> str:
    """How the automation's timing went, from the server's events: when the run's last heartbeat
    came (before ``dead_at``, epoch seconds) and how long after the window closed (last
    heartbeat + :data:`SILENCE`) the run was Crashed."""
    only_this_run = EventFilter(
        event=EventNameFilter(name=[heartbeat.EVENT, "prefect.flow-run.Crashed"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    deadline = time.monotonic() + 20  # the server stores events in batches
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(filter=only_this_run, limit=50).events
            if any(e.event.endswith("Crashed") for e in events) or time.monotonic() > deadline:
                break
            time.sleep(1)
    beats = [e.occurred.timestamp() for e in events if e.event.endswith("heartbeat")]
    crashes = [e.occurred.timestamp() for e in events if e.event.endswith("Crashed")]
    if not beats or not crashes:
        return f"(events: {len(beats)} heartbeats, {len(crashes)} Crashed)"
    last, crashed = max(beats), min(crashes)
    late = crashed - last - SILENCE
    return (
        f"last heartbeat {dead_at - last:.1f} s before; Crashed {late:.1f} s after the "
        f"{SILENCE} s window closed"
    )


def crash_messages(slack: FakeSlack) -> list[str]:
    return [m.text for m in slack.top_level(DEPLOYS) if m.text.startswith(":warning:")]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_a_deploy_whose_worker_machine_dies_is_crashed_and_reported(
    workers: list[Worker],
    gateway_process: Gateway,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> None:
    first, second = deploy_hosts
    fake_github.add_repo("acme/shop", git_dir=app_repo.path)
    GitHubAccess(token=fake_github.token, api_url=fake_github.url).save("default", overwrite=True)
    SlackAccess(bot_token=fake_slack.token, api_url=fake_slack.api_url).save(
        "default", overwrite=True
    )
    save_app(app_repo, deploy_hosts, ssh_key)
    watch_silent_runs(gateway_process.url, secret=SECRET)  # as docs/scale-out.md has it run
    logs = [w.log for w in workers] + [gateway_process.log]

    v1 = wait_final(start_deploy("v1"), 240, logs)
    assert v1.state_name == "Completed", v1.state

    first.run(f"touch {HOLD}", check=True)
    run_id = start_deploy("v2")
    until(lambda: (first.root / APP / "held").exists(), 180, "the deploy restarting host 1")
    runner = read_run(run_id).labels.get("prefect.worker.name")
    [doomed] = [w for w in workers if w.name == runner]
    kill_machine(doomed)
    killed, killed_at = time.monotonic(), time.time()

    crashed = when(lambda: read_run(run_id).state_name == "Crashed", killed, "run Crashed")
    github = when(lambda: "error" in github_states(fake_github, run_id), killed, "GitHub told")
    slack = when(lambda: crash_messages(fake_slack), killed, "Slack told")
    print(
        f"measured: worker machine killed mid-restart: Crashed after {crashed:.1f} s, "
        f"GitHub error after {github:.1f} s, Slack told after {slack:.1f} s"
    )
    print(f"measured: worker machine killed: {window_report(run_id, killed_at)}")
    run = read_run(run_id)
    assert "no heartbeat" in (run.state.message or ""), run.state
    assert REPORTED_LABEL in run.labels
    [told] = crash_messages(fake_slack)
    assert str(run_id) in told and run.name in told, told

    # The slot is free: the next deploy runs at once, on the surviving worker, and leaves both
    # hosts on one release. The killed run's restart, left waiting on host 1, gives up.
    first.run(f"rm -f {HOLD}", check=True)
    asked = time.monotonic()
    again = start_deploy("v2")
    until(lambda: read_run(again).state_name == "Running", 30, "the next deploy running")
    started = time.monotonic() - asked
    done = wait_final(again, 240, logs)
    print(f"measured: the next deploy was running {started:.1f} s after it was asked for")
    assert done.state_name == "Completed", done.state
    for host in (first, second):
        status, body = host.http_get("/REVISION", port=port_of(APP))
        assert (status, body.strip()) == (200, app_repo.v2), host
    assert len(crash_messages(fake_slack)) == 1  # reported once


# --- chatops up: no false alarm; a frozen run -------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_a_frozen_deploy_is_crashed_and_reported_once_and_a_long_one_is_not(bed: Bed) -> None:
    first, second = bed.hosts
    v1, v2 = bed.repo.v1, bed.repo.v2
    with bed.up() as up:
        bed.configure(up, health_timeout=60)
        bed.deploy(up, "v1")

        # Longer than the automation's window: each host's app comes up later than that after
        # its restart (within health_timeout); the heartbeats keep the run alive meanwhile.
        for host in bed.hosts:
            delay_restart(host, v2, SLOW_START)
        began = time.monotonic()
        bed.slash(up, "shop@v2 to staging")
        states = deployment_states(bed, v2, 1)
        until(lambda: set(states()) & {"success", "failure", "error"}, 300, "the long deploy")
        print(f"measured: a deploy of {time.monotonic() - began:.0f} s was not taken for dead")
        assert "success" in states() and "error" not in states(), states()
        assert all(serves(host, v2) for host in bed.hosts)
        assert crash_messages(bed.slack) == []

        # Frozen mid-deploy, once its GitHub deployment exists: no heartbeat, no end.
        bed.slash(up, "shop@v1 to staging")
        states = deployment_states(bed, v1, 2)
        until(lambda: "in_progress" in states(), 120, "the deploy of v1 under way")
        until(lambda: list((bed.home / "runs").glob("*.pid")), 60, "its process recorded")
        [record] = list((bed.home / "runs").glob("*.pid"))
        run_id = record.stem
        pid = bed.flow_pid()
        os.kill(pid, signal.SIGSTOP)
        frozen, frozen_at = time.monotonic(), time.time()
        with temporary_prefect(up):
            crashed = when(
                lambda: read_run(UUID(run_id)).state_name == "Crashed", frozen, "run Crashed"
            )
        github = when(lambda: "error" in states(), frozen, "GitHub told")
        slack = when(lambda: crash_messages(bed.slack), frozen, "Slack told")
        print(
            f"measured: frozen run: Crashed after {crashed:.1f} s, GitHub error after "
            f"{github:.1f} s, Slack told after {slack:.1f} s"
        )
        with temporary_prefect(up):
            print(f"measured: frozen run: {window_report(UUID(run_id), frozen_at)}")
        [told] = crash_messages(bed.slack)
        assert "no heartbeat" in told and run_id in told, told

        # Its process dies at last, under the runner's eyes: nobody is told twice.
        os.kill(pid, signal.SIGKILL)
        until(lambda: not _alive(pid), 30, "the frozen process gone")
        time.sleep(5)
        assert len(crash_messages(bed.slack)) == 1, crash_messages(bed.slack)
        assert states().count("error") == 1, states()
        bed.deploy(up, "v1")  # the slot is free; the hosts come to one release
        assert all(serves(host, v1) for host in bed.hosts)


def deployment_states(bed: Bed, sha: str, nth: int) -> Callable[[], list[str]]:
    """The states GitHub got for the ``nth`` deployment of ``sha`` (1 = the first)."""

    def states() -> list[str]:
        made = [d for d in bed.github.deployments if d["sha"] == sha]
        return (
            [s["state"] for s in bed.github.statuses(made[nth - 1]["id"])]
            if len(made) >= nth
            else []
        )

    return states


@contextlib.contextmanager
def temporary_prefect(up: object) -> Iterator[None]:
    from prefect.settings import temporary_settings

    with temporary_settings(up.prefect_settings()):  # type: ignore[attr-defined]
        yield
