"""A deploy to many light hosts, followed from the terminal: every task line and the result show,
and following the run costs the Prefect server about what the deploy itself costs.

The hosts are light (sshd and a tiny HTTP health server each, instead of Tomcat), so that the
orchestration's cost shows: 42 of them, all in one batch, on a real ``chatops up``. Each host's
health server answers ``/demo/health`` with the full sha of the release ``current`` points to.

The cost of watching is measured with the CPU time (/proc) of the Prefect server's processes
over a deploy followed by ``chatops deploy`` and over one started with ``--detach`` (the test
then asks Prefect once a second whether it is over), two of each in the order unwatched, watched,
watched, unwatched (after a first deploy that is not measured: the first build and the first
release on fresh hosts cost more), each of a commit not built before.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from prefect.settings import temporary_settings

from tests.shop import save_shop
from tests.testbed.gitrepo import AppRepo, make_app_repo
from tests.testbed.hosts import SshKey, TestHost
from tests.testbed.light import RESTART, make_light
from tests.up_server import ChatopsUp, post_json

pytestmark = pytest.mark.e2e

HOSTS = 42
LINE = re.compile(r"^  [✓✗–] (.+?)\s+(completed|failed|crashed|cancelled)\b")
RUN_ID = re.compile(r"flow-run/([0-9a-f-]{36})")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
UNFINISHED = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"]


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and every process under it, the ended ones it waited for included."""
    ticks = 0
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(stat.parent.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields:  # utime, stime, cutime, cstime
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        todo += children.get(current, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_state(up: ChatopsUp, run_id: str) -> str | None:
    found = post_json(
        f"{up.api}/flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}}, up.auth
    )
    return found[0]["state_type"] if found else None  # type: ignore[index]


def finished_task_names(up: ChatopsUp, run_id: str) -> Counter[str]:
    names: Counter[str] = Counter()
    offset = 0
    while True:
        page = post_json(
            f"{up.api}/task_runs/filter",
            {
                "flow_runs": {"id": {"any_": [run_id]}},
                "task_runs": {"state": {"type": {"any_": sorted(FINAL)}}},
                "limit": 200,
                "offset": offset,
            },
            up.auth,
        )
        names.update(t["name"] for t in page)  # type: ignore[union-attr]
        offset += len(page)  # type: ignore[arg-type]
        if len(page) < 200:  # type: ignore[arg-type]
            return names


def unfinished_tasks(up: ChatopsUp, run_id: str) -> int:
    """How many of the run's task runs the server has not recorded as over yet."""
    page = post_json(
        f"{up.api}/task_runs/count",
        {
            "flow_runs": {"id": {"any_": [run_id]}},
            "task_runs": {"state": {"type": {"any_": UNFINISHED}}},
        },
        up.auth,
    )
    return int(page)  # type: ignore[arg-type]


def new_tag(repo: AppRepo, tag: str) -> None:
    repo.git("commit", "-q", "--allow-empty", "-m", f"commit {tag}")
    repo.git("tag", tag)


@pytest.mark.parametrize("deploy_hosts", [HOSTS], indirect=True)
def test_a_deploy_to_42_light_hosts_shows_every_task_line_and_watching_costs_little(
    tmp_path: Path, deploy_hosts: list[TestHost], ssh_key: SshKey
) -> None:
    for host in deploy_hosts:
        make_light(host)
    repo = make_app_repo(tmp_path / "demo")
    with ChatopsUp(tmp_path / "home") as up:
        with temporary_settings(up.prefect_settings()):
            save_shop(
                repo,
                deploy_hosts,
                ssh_key,
                batch_size=HOSTS,
                restart_command=RESTART,
                health_timeout=120,
                command_timeout=120,
            )
        server = up.child("prefect")
        costs: dict[str, list[tuple[float, float]]] = {"watched": [], "unwatched": []}
        for n, watched in enumerate([True, False, True, True, False]):
            tag = f"w{n}"
            new_tag(repo, tag)
            sha = repo.git("rev-parse", tag)
            before, started = cpu_seconds(server), time.monotonic()
            if watched:
                done = up.cli("deploy", f"shop@{tag}", "to", "staging", timeout=600)
                out = done.stdout + done.stderr
                assert done.returncode == 0, out
                run_id = RUN_ID.search(out).group(1)  # type: ignore[union-attr]
            else:
                done = up.cli("deploy", f"shop@{tag}", "to", "staging", "--detach", timeout=120)
                out = done.stdout + done.stderr
                assert done.returncode == 0, out
                run_id = RUN_ID.search(out).group(1)  # type: ignore[union-attr]
                deadline = time.monotonic() + 600
                while run_state(up, run_id) not in FINAL and time.monotonic() < deadline:
                    time.sleep(1.0)
            # The server records task runs' ends after their run's: each window ends when it
            # has recorded them all, so neither deploy's cost spills into the next one's.
            recorded = time.monotonic() + 60
            while unfinished_tasks(up, run_id) and time.monotonic() < recorded:
                time.sleep(0.5)
            cost, took = cpu_seconds(server) - before, time.monotonic() - started
            if n > 0:  # the first deploy is the warm-up
                costs["watched" if watched else "unwatched"].append((cost, took))
            assert run_state(up, run_id) == "COMPLETED", out
            assert all(sha in host.http_get("/demo/health")[1] for host in deploy_hosts)
            if watched:
                shown = Counter(m.group(1) for line in out.splitlines() if (m := LINE.match(line)))
                expected = finished_task_names(up, run_id)
                assert shown == expected, (shown - expected, expected - shown)
                assert sum(expected.values()) > 4 * HOSTS  # check, upload, activate, health…
                for host in deploy_hosts:
                    assert f"health check {host.address}" in shown
                    assert f"finish {host.address}" in shown
                assert out.rstrip().endswith("Completed"), out[-500:]

    watched_cpu = sum(c for c, _ in costs["watched"]) / 2
    unwatched_cpu = sum(c for c, _ in costs["unwatched"]) / 2
    for kind, samples in costs.items():
        print(
            f"measured: Prefect server CPU, {kind} deploy to {HOSTS} light hosts: "
            + ", ".join(f"{c:.2f} CPU-s over {t:.1f} s" for c, t in samples)
        )
    # A cost, not a behaviour: printed for docs/operations.md, its target (within 10 %) is a
    # benchmark's to hold, not this test's.
    print(f"measured: watched ÷ unwatched server CPU = {watched_cpu / unwatched_cpu:.3f}")
