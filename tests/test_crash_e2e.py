"""Crashes for real: the deploy's process and the runner are SIGKILLed mid-deploy, or
``chatops up`` gets SIGTERM, on a real ``chatops up`` with two sshd hosts running Tomcat.

The tests that kill, stop or restart ``chatops up`` itself start their own; the others share one
(:func:`shared_up`), each with its own hosts, fakes and configuration.

After a kill ``chatops up`` is restarted and a new deploy is asked for at once: it must start
within 10 s of the restart (the dead run's slot is released, not left to expire), bring
every host back to one release first, and finish; GitHub (fake) must have ``error`` on the
crashed deployment and Slack (fake) must have been told. After a SIGTERM every host must run
the same release.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
from prefect.settings import temporary_settings

from blocks import App, GitHubAccess, SlackAccess
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import ALICE, DEPLOYS, SLACK_SECRET, slack_headers, slash_body
from tests.shop import DEPLOY_PATH, save_shop
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost
from tests.up_server import ChatopsUp, get, post_json

pytestmark = pytest.mark.e2e
PADDED = (
    "mvn -B clean package && head -c 3000000 /dev/urandom > target/pad.bin && "
    "jar uf target/demo.war -C target pad.bin"
)
"""The example app's build, with 3 MB the upload has to carry (so it can be caught at it)."""
SLOW_BATCH_SECONDS = 40
"""A restart that long makes a batch outlast the 30 s Prefect's runner gives a run to stop."""
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def until(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.1)


def serves(host: TestHost, sha: str) -> bool:
    try:
        status, body = host.http_get("/demo/health")
    except OSError:  # the app is restarting
        return False
    return status == 200 and sha in body


def current(host: TestHost) -> str | None:
    link = host.root / "current"
    return link.readlink().name if link.is_symlink() else None


def delay_restart(host: TestHost, sha: str, how: str) -> None:
    """Run ``how`` (shell) before the host's real restart, for release ``sha`` only."""
    host.run(
        f"cp {DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}/bin/real-restart && "
        f"printf '#!/bin/sh\\nif grep -q {sha} {DEPLOY_PATH}/current/REVISION; then {how}; fi\\n"
        f'exec {DEPLOY_PATH}/bin/real-restart "$@"\\n\' > {DEPLOY_PATH}/bin/restart-tomcat',
        check=True,
    )


def mend_restart(host: TestHost) -> None:
    host.run(f"cp -f {DEPLOY_PATH}/bin/real-restart {DEPLOY_PATH}/bin/restart-tomcat || true")


@dataclass
class Bed:
    home: Path
    hosts: list[TestHost]
    repo: AppRepo
    github: FakeGitHub
    slack: FakeSlack
    key: SshKey
    shared: ChatopsUp | None = None
    """The module's running ``chatops up`` (:func:`shared_bed`); None: :meth:`up` starts one."""

    def up(self, **env: str) -> AbstractContextManager[ChatopsUp]:
        """A ``chatops up`` on :attr:`home`: the shared one when there is one (left running on
        exit), else a new one with ``env`` (stopped on exit)."""
        if self.shared is not None:
            assert not env, "the shared chatops up runs with the environment it started with"
            return contextlib.nullcontext(self.shared)
        return ChatopsUp(self.home, env=up_env(**env))

    def configure(self, up: ChatopsUp, **environment: object) -> None:
        with temporary_settings(up.prefect_settings()):
            GitHubAccess(token=self.github.token, api_url=self.github.url).save(
                "default", overwrite=True
            )
            SlackAccess(bot_token=self.slack.token, api_url=self.slack.api_url).save(
                "default", overwrite=True
            )
            save_shop(self.repo, self.hosts, self.key, **environment)
            App(
                repository="acme/shop",
                clone_url=self.repo.url,
                default_environment="staging",
                environments=["staging"],
                build_command=PADDED,
            ).save("shop", overwrite=True)
        if self.shared is not None:
            self.wait_until_the_gateway_reads_it(up)

    def wait_until_the_gateway_reads_it(self, up: ChatopsUp) -> None:
        """A shared gateway knew an earlier test's configuration and reads it again every few
        seconds: wait until its answer to ``where shop`` names this test's hosts."""
        until(
            lambda: all(h.address in self.slash(up, "where shop")["text"] for h in self.hosts),
            30,
            "the gateway reading this test's configuration",
        )

    def slash(self, up: ChatopsUp, text: str) -> dict:
        body = slash_body(text, self.slack.response_url(f"r{time.time_ns()}"), ALICE, DEPLOYS)
        request = urllib.request.Request(
            f"{up.gateway}/slack/commands", data=body, headers=slack_headers(body)
        )
        with _opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def deploy(self, up: ChatopsUp, ref: str) -> None:
        done = up.cli("deploy", f"shop@{ref}", "to", "staging", user="erin")
        assert done.returncode == 0, done.stdout + done.stderr

    def deploy_v2_until(self, up: ChatopsUp, phase: str) -> None:
        """Deploy v1, then ask Slack for v2 and wait until that deploy is at ``phase``."""
        self.configure(up, health_timeout=60)
        self.deploy(up, "v1")
        caught = phase_reached(self, phase)
        reply = self.slash(up, "shop@v2 to staging")
        assert "shop@v2 → staging" in reply["text"]
        until(caught, 120, f"the deploy reaching {phase}")

    def github_states(self, sha: str) -> list[str]:
        """The states GitHub was told for the deployment of ``sha`` ([] before there is one)."""
        made = next((d for d in self.github.deployments if d["sha"] == sha), None)
        return [s["state"] for s in self.github.statuses(made["id"])] if made else []

    def flow_pid(self) -> int:
        [record] = list((self.home / "runs").glob("*.pid"))
        return int(record.read_text().split()[0])


def up_env(**env: str) -> dict[str, str]:
    return {"CHATOPS_SLACK_SIGNING_SECRET": SLACK_SECRET, **env}


@pytest.fixture(scope="module")
def shared_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatopsUp]:
    """One ``chatops up`` for the tests of a module that neither stop, kill nor restart it: its
    start costs half a minute or more on this 2-core machine. Each test saves its own hosts,
    fakes and configuration (:meth:`Bed.configure`) and deploys v1 to its fresh hosts first.
    ``CHATOPS_PAUSE_DIR`` is ``pauses`` beside its home (empty: nothing pauses)."""
    root = tmp_path_factory.mktemp("shared-up")
    pauses = root / "pauses"
    pauses.mkdir()
    with ChatopsUp(root / "home", env=up_env(CHATOPS_PAUSE_DIR=str(pauses))) as up:
        yield up


@pytest.fixture
def shared_bed(bed: Bed, shared_up: ChatopsUp) -> Iterator[Bed]:
    """:func:`bed` on the module's shared ``chatops up`` (and its home). Each test starts with no
    run of an earlier one still going (an aborted or killed run may still be switching back or
    being marked Cancelled), and leaves no pause armed, whatever happened in it."""
    until(lambda: not unfinished_runs(shared_up), 180, "the runs of earlier tests ending")
    yield replace(bed, home=shared_up.home, shared=shared_up)
    for armed in pause_dir(shared_up).iterdir():
        armed.unlink()


UNFINISHED = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"]


def unfinished_runs(up: ChatopsUp) -> list[str]:
    """The names of the flow runs on ``up``'s server that have not ended."""
    state = {"type": {"any_": UNFINISHED}}
    runs = post_json(f"{up.api}/flow_runs/filter", {"flow_runs": {"state": state}}, up.auth)
    return [run["name"] for run in runs]  # type: ignore[union-attr,index]


def pause_dir(up: ChatopsUp) -> Path:
    return Path(up.extra_env["CHATOPS_PAUSE_DIR"])


@pytest.fixture
def bed(
    tmp_path: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> Iterator[Bed]:
    fake_github.add_repo("acme/shop", git_dir=app_repo.path)
    yield Bed(tmp_path / "home", deploy_hosts, app_repo, fake_github, fake_slack, ssh_key)
    for host in deploy_hosts:
        host.unthrottle()


def first_task_started(up: ChatopsUp, after: float) -> float | None:
    """When the first task of a run that started after ``after`` (epoch seconds) began. The
    newest page of task runs holds them: a shared server has more than a page of older ones."""
    tasks = post_json(f"{up.api}/task_runs/filter", {"sort": "EXPECTED_START_TIME_DESC"}, up.auth)
    starts = [
        datetime.fromisoformat(t["start_time"]).timestamp() for t in tasks if t.get("start_time")
    ]  # type: ignore[union-attr]
    later = [s for s in starts if s >= after]
    return min(later) if later else None


def phase_reached(bed: Bed, phase: str) -> Callable[[], object]:
    """Make the deploy of v2 slow at ``phase``; return how to tell it got there."""
    first, second = bed.hosts
    v2 = bed.repo.v2
    if phase == "upload":
        first.throttle("2mbit")
        return lambda: list((first.root / "releases").glob(".*.partial"))
    if phase == "after batch 1":
        delay_restart(second, v2, "sleep 6")
        return lambda: serves(first, v2) and (second.root / "SWITCHING").exists()
    later = f'(sleep 6; exec {DEPLOY_PATH}/bin/real-restart "$@") >/dev/null 2>&1 & exit 0'
    delay_restart(first, v2, later)  # the app comes up 6 s after the restart returned
    return lambda: (current(first) or "").endswith(v2[:7]) and not serves(first, v2)


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
@pytest.mark.parametrize("phase", ["upload", "after batch 1", "health check"])
def test_a_killed_deploy_is_reported_and_the_next_one_recovers_every_host(
    bed: Bed, phase: str
) -> None:
    v2 = bed.repo.v2
    with bed.up() as up:
        bed.deploy_v2_until(up, phase)
        os.kill(bed.flow_pid(), signal.SIGKILL)
        os.kill(up.child("chatops.runner"), signal.SIGKILL)
        killed = time.time()
    for host in bed.hosts:
        host.unthrottle()
        mend_restart(host)

    with bed.up() as up:
        restarted = time.time()  # chatops up answers, its runner serves the flows
        bed.deploy(up, "v2")
        started = first_task_started(up, after=killed)
        assert started is not None, "the next deploy never started"
        print(
            f"measured: {phase}: the next deploy started {started - restarted:.1f} s after "
            f"the restart ({started - killed:.1f} s after the kill)"
        )
        assert started - restarted <= 10  # the dead run's slot was released, not left to expire
        for host in bed.hosts:
            assert serves(host, v2) and (current(host) or "").endswith(v2[:7])
            assert not (host.root / "SWITCHING").exists()
    assert "error" in bed.github_states(v2)
    told = [m.text for m in bed.slack.top_level(DEPLOYS)]
    assert any("crashed" in text for text in told), told


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_a_runner_killed_while_it_reports_a_dead_run_leaves_the_report_to_the_next_one(
    bed: Bed, tmp_path: Path
) -> None:
    """The deploy's process is killed; the runner claims the report of its end and is killed
    itself before telling anyone. The runner ``chatops up`` starts again tells GitHub and
    Slack, once."""
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    v2 = bed.repo.v2
    with bed.up(CHATOPS_PAUSE_DIR=str(pauses)) as up:
        bed.deploy_v2_until(up, "health check")
        (pauses / "crash claimed").touch()
        os.kill(bed.flow_pid(), signal.SIGKILL)
        claimed = pauses / "crash claimed.paused"
        until(claimed.exists, 60, "the runner claiming the report of the killed run")
        os.kill(int(claimed.read_text()), signal.SIGKILL)
        killed = time.monotonic()
        (pauses / "crash claimed").unlink()
        until(lambda: "error" in bed.github_states(v2), 120, "GitHub told of the killed deploy")
        print(
            f"measured: the runner started again told GitHub {time.monotonic() - killed:.1f} s "
            "after the reporting runner was killed"
        )
        until(
            lambda: any("crashed" in m.text for m in bed.slack.top_level(DEPLOYS)),
            30,
            "Slack told",
        )
        time.sleep(2)  # a second report would come right after the first
        told = [m.text for m in bed.slack.top_level(DEPLOYS) if "crashed" in m.text]
        assert len(told) == 1, told
        assert bed.github_states(v2).count("error") == 1


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_sigterm_to_chatops_up_mid_deploy_leaves_every_host_on_one_release(bed: Bed) -> None:
    first, second = bed.hosts
    v1, v2 = bed.repo.v1, bed.repo.v2
    with bed.up() as up:
        bed.configure(up, health_timeout=60)
        bed.deploy(up, "v1")
        # the second batch takes over 40 s: longer than Prefect's own runner lets a run stop in
        delay_restart(second, v2, f"sleep {SLOW_BATCH_SECONDS}")
        bed.slash(up, "shop@v2 to staging")
        until(
            lambda: serves(first, v2) and (second.root / "SWITCHING").exists(),
            120,
            "the second batch",
        )
        assert up.process is not None
        up.process.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        assert up.process.wait(timeout=SLOW_BATCH_SECONDS + 120) == 0
        print(f"measured: chatops up stopped {time.monotonic() - asked:.1f} s after SIGTERM")
        assert time.monotonic() - asked >= SLOW_BATCH_SECONDS - 5  # it waited for the batch
        releases = {current(host) for host in bed.hosts}
        assert len(releases) == 1, f"hosts left on {releases}"
        [release] = releases
        sha = v2 if release.endswith(v2[:7]) else v1
        assert all(serves(host, sha) for host in bed.hosts)
        assert not any((host.root / "SWITCHING").exists() for host in bed.hosts)


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
@pytest.mark.parametrize("point", ["success", "success recorded", "success told"])
def test_a_deploy_killed_after_its_last_health_check_keeps_its_release_once_it_is_a_success(
    shared_bed: Bed, point: str
) -> None:
    """Every host is healthy on v2 and its ``finish`` (record, clear the journal) is held; the
    deploy's process is killed at ``point``: before its success is recorded (the next deploy
    switches back: nobody was told success), after it was recorded, after GitHub and Slack were
    told. Once recorded, nothing switches the hosts back and nothing says ``error``."""
    v1, v2 = shared_bed.repo.v1, shared_bed.repo.v2
    with shared_bed.up() as up:
        pauses = pause_dir(up)
        shared_bed.configure(up, health_timeout=60)
        shared_bed.deploy(up, "v1")
        for host in shared_bed.hosts:  # from now on, a restart on v1 means a switch back
            delay_restart(host, v1, f"echo v1 >> {DEPLOY_PATH}/restarts-on-v1")
        (pauses / "finish").touch()
        (pauses / point).touch()
        shared_bed.slash(up, "shop@v2 to staging")
        until(lambda: (pauses / f"{point}.paused").exists(), 180, f"the deploy at {point}")
        killed_release = (shared_bed.hosts[0].root / "SWITCHING").read_text().split()[1]
        os.kill(shared_bed.flow_pid(), signal.SIGKILL)
        for armed in pauses.iterdir():
            armed.unlink()
        until(
            lambda: any(
                m.text.startswith(":warning:") for m in shared_bed.slack.top_level(DEPLOYS)
            ),
            60,
            "Slack told about the killed deploy",
        )
        shared_bed.deploy(up, "v2")
        for host in shared_bed.hosts:
            assert serves(host, v2) and (current(host) or "").endswith(v2[:7])
            assert not (host.root / "SWITCHING").exists()
        states = shared_bed.github_states(v2)
        switched_back = [
            h.address for h in shared_bed.hosts if (h.root / "restarts-on-v1").exists()
        ]
        recorded = [killed_release in (h.root / "HISTORY").read_text() for h in shared_bed.hosts]
        print(f"measured: killed at {point}: GitHub {states}, switched back on {switched_back}")
    if point == "success":  # nobody was told success: switching back is right
        assert "success" not in states and states[-1] == "error"
        assert len(switched_back) == 2 and not any(recorded)
    else:
        assert "error" not in states and "success" in states  # later "inactive": superseded
        assert switched_back == [] and all(recorded)


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_a_killed_deploy_process_is_reported_at_once_by_the_runner(shared_bed: Bed) -> None:
    first, _ = shared_bed.hosts
    v2 = shared_bed.repo.v2
    with shared_bed.up() as up:
        shared_bed.deploy_v2_until(up, "health check")
        os.kill(shared_bed.flow_pid(), signal.SIGKILL)
        killed = time.monotonic()
        until(lambda: "error" in shared_bed.github_states(v2), 30, "GitHub told")
        print(
            f"measured: a killed deploy process was reported {time.monotonic() - killed:.1f} s "
            "after the kill"
        )
        until(
            lambda: any("crashed" in m.text for m in shared_bed.slack.top_level(DEPLOYS)),
            10,
            "Slack told",
        )
        mend_restart(first)
        asked = time.time()
        shared_bed.deploy(up, "v2")
        started = first_task_started(up, after=asked)
        assert started is not None
        print(f"measured: the next deploy started {started - asked:.1f} s after it was asked")
        assert started - asked <= 10  # the runner released the dead run's slot
        assert all(serves(host, v2) for host in shared_bed.hosts)


@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_the_cli_follows_a_run_through_a_prefect_server_restart(shared_bed: Bed) -> None:
    [host] = shared_bed.hosts
    with shared_bed.up() as up:
        shared_bed.configure(up, health_timeout=60)
        shared_bed.deploy(up, "v1")
        # The app comes up once the test says so: the run outlasts the server's restart.
        go = f"{DEPLOY_PATH}/go"
        delay_restart(
            host,
            shared_bed.repo.v2,
            f"(while [ ! -e {go} ]; do sleep 0.2; done; "
            f'exec {DEPLOY_PATH}/bin/real-restart "$@") >/dev/null 2>&1 & exit 0',
        )
        follow = up.cli_process("deploy", "shop@v2", "to", "staging", user="erin")
        until(lambda: (current(host) or "").endswith(shared_bed.repo.v2[:7]), 120, "the switch")
        server = up.child("prefect")
        os.kill(server, signal.SIGKILL)  # chatops up starts it again
        until(lambda: server_of(up) not in (None, server), 60, "the server started again")
        until(lambda: answers(f"{up.api}/health", up.auth), 60, "the server answering again")
        assert follow.poll() is None, "the CLI was still following when the server came back"
        host.run(f"touch {go}", check=True)
        out, _ = follow.communicate(timeout=180)
        assert follow.returncode == 0, out
        # The gateway waits up to 10 s for Prefect on each look; a longer outage is said once.
        if "lost contact with Prefect" in out:
            assert "Prefect answers again" in out, out
        assert out.rstrip().endswith("→ staging: Completed"), out
        assert serves(host, shared_bed.repo.v2)


def answers(url: str, auth: str) -> bool:
    try:
        return get(url, auth)[0] == 200
    except OSError:  # refused, or an error status while it starts
        return False


def server_of(up: ChatopsUp) -> int | None:
    """The pid of the Prefect server ``chatops up`` runs now (None between two of them)."""
    try:
        return up.child("prefect")
    except LookupError:
        return None


def processes_of(home: Path) -> list[int]:
    """Pids of processes whose environment carries this ``CHATOPS_HOME`` (every process that
    ``chatops up`` started, its runs included, is marked so)."""
    mark = f"CHATOPS_HOME={home}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile
            continue
    return [pid for pid in found if pid != os.getpid()]


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_sigkill_of_chatops_up_leaves_no_process_of_it_and_the_next_start_reports_the_run(
    bed: Bed,
) -> None:
    v2 = bed.repo.v2
    with bed.up() as up:
        bed.deploy_v2_until(up, "health check")
        assert bed.flow_pid() in processes_of(bed.home)
        assert up.process is not None
        up.process.kill()
        killed = time.monotonic()
        try:
            until(lambda: not processes_of(bed.home), 10, "every process of chatops up gone")
        finally:
            for pid in processes_of(bed.home):  # leave nothing behind, whatever happened
                os.kill(pid, signal.SIGKILL)
        print(
            f"measured: SIGKILL of chatops up: its last process was gone "
            f"{time.monotonic() - killed:.1f} s later"
        )
    mend_restart(bed.hosts[0])

    with bed.up():
        until(
            lambda: "error" in bed.github_states(v2),
            30,
            "GitHub told of the run the dead chatops up left",
        )


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_a_run_past_run_timeout_fails_switches_every_host_back_and_frees_the_slot(
    shared_bed: Bed,
) -> None:
    _, second = shared_bed.hosts
    v1, v2 = shared_bed.repo.v1, shared_bed.repo.v2
    bound = 20  # seconds from the slot: past batch 1 (checkout, cached build, upload, switch)
    with shared_bed.up() as up:
        shared_bed.configure(up, health_timeout=60)
        shared_bed.deploy(up, "v2")  # v2's build is cached from here on
        shared_bed.deploy(up, "v1")
        shared_bed.configure(up, health_timeout=60, run_timeout=bound)
        delay_restart(second, v2, "sleep 300")  # batch 2's restart hangs (command_timeout 60)
        asked = time.monotonic()
        reply = shared_bed.slash(up, "shop@v2 to staging")
        assert "shop@v2 → staging" in reply["text"]
        deployment = lambda: next(  # noqa: E731
            (d for d in reversed(shared_bed.github.deployments) if d["sha"] == v2), None
        )
        ended = lambda: [  # noqa: E731
            s
            for s in shared_bed.github.statuses(deployment()["id"])
            if s["state"] in ("error", "failure")
        ]
        until(lambda: deployment() and ended(), 120, "GitHub told the deploy failed")
        told = time.monotonic() - asked
        [status] = ended()
        print(
            f"measured: a deploy past run_timeout ({bound} s) was reported failed {told:.1f} s "
            f"after it was asked: {status['description']!r}"
        )
        assert f"run_timeout ({bound} s)" in status["description"], status
        assert told < bound + 30  # not the restart's 60 s command_timeout
        for host in shared_bed.hosts:
            assert (current(host) or "").endswith(v1[:7]), f"{host.address} left on {current(host)}"
            assert serves(host, v1)
        slack = lambda: " ".join(  # noqa: E731
            m.text for m in list(shared_bed.slack.messages.values()) if m.channel == DEPLOYS
        )
        until(lambda: f"run_timeout ({bound} s)" in slack(), 10, "Slack told which bound")

        mend_restart(second)
        shared_bed.configure(up, health_timeout=60)
        again = time.time()
        shared_bed.deploy(up, "v2")
        started = first_task_started(up, after=again)
        assert started is not None
        print(f"measured: the next deploy started {started - again:.1f} s after it was asked")
        assert started - again <= 10  # the slot was free
        assert all(serves(host, v2) for host in shared_bed.hosts)
