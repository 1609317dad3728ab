"""Benchmark: one deploy of the example app to two real SSH hosts, split by step.

Runs on the test bed (root, Debian packages of scripts/install-deps.sh): two hosts in network
namespaces running Tomcat, a git repository of examples/webapp, a temporary Prefect server.

Baseline, measured in the same run: a plain shell-style deploy of the same commit by hand —
``git clone`` + ``mvn -B clean package``, then for each host in turn: copy the war over SSH, switch
the symlink, restart, poll the health URL. The pipeline is then timed for a cold deploy (build),
a second commit, and a redeploy of an already built commit (cache hit). Ratios are pipeline time
divided by the baseline's.

    sudo .venv/bin/python bench/deploy_steps.py [--write docs/benchmarks.md]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STATE = Path(tempfile.mkdtemp(prefix="chatops-bench-"))
os.environ.update(
    CHATOPS_HOME=str(STATE / "home"),
    PREFECT_HOME=str(STATE / "prefect"),
    DO_NOT_TRACK="1",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_LEVEL="WARNING",
)

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from blocks import App, Environment  # noqa: E402
from flows.deploy import deploy  # noqa: E402
from tests.testbed.gitrepo import make_app_repo  # noqa: E402
from tests.testbed.hosts import make_ssh_key, netns_hosts  # noqa: E402

DEPLOY_PATH = "/srv/app"
HEALTH = "http://{host}:8080/demo/health"


def by_hand(repo, hosts, key, sha: str, work: Path) -> dict[str, float]:
    """The baseline: what a person's deploy script does, step by step, host after host."""
    from fabric import Connection

    times: dict[str, float] = {}
    started = time.monotonic()
    tree = work / f"clone-{sha[:7]}"
    subprocess.run(["git", "clone", "-q", repo.url, str(tree)], check=True)
    subprocess.run(["git", "-C", str(tree), "checkout", "-q", sha], check=True)
    times["checkout"] = time.monotonic() - started
    started = time.monotonic()
    subprocess.run(
        ["mvn", "-B", "-q", "clean", "package"],
        cwd=tree,
        check=True,
        env=dict(os.environ, GIT_COMMIT=sha),
        stdout=subprocess.DEVNULL,
    )
    times["build"] = time.monotonic() - started
    started = time.monotonic()
    for host in hosts:
        with Connection(
            host.address,
            user="root",
            connect_kwargs={
                "key_filename": str(key.private),
                "look_for_keys": False,
                "allow_agent": False,
            },
        ) as conn:
            release = f"{DEPLOY_PATH}/releases/manual-{sha[:7]}"
            conn.run(f"mkdir -p {release}", hide=True, in_stream=False)
            conn.put(str(tree / "target" / "demo.war"), f"{release}/demo.war")
            conn.run(
                f"echo {sha} > {release}/REVISION && ln -sfn {release} {DEPLOY_PATH}/current"
                f" && {DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}",
                hide=True,
                in_stream=False,
            )
        host.wait_http("/demo/health", contains=sha, timeout=120)
    times["ship, restart, health (sequential)"] = time.monotonic() - started
    return times


def configure(repo, hosts, key) -> None:
    App(repository="acme/demo", clone_url=repo.url, environments=["staging"]).save(
        "demo", overwrite=True
    )
    Environment(
        hosts=[h.address for h in hosts],
        ssh_user="root",
        ssh_private_key=key.private_text,
        known_hosts=[h.known_hosts_line for h in hosts],
        deploy_path=DEPLOY_PATH,
        restart_command=f"{DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}",
        health_url=HEALTH,
        batch_size=1,
    ).save("demo-staging", overwrite=True)


def pipeline(ref: str) -> tuple[float, dict[str, float]]:
    started = time.monotonic()
    summary = deploy(app="demo", environment="staging", ref=ref)
    total = time.monotonic() - started
    return total, {s["name"]: s["seconds"] or 0.0 for s in summary["steps"]}


def table(rows: list[tuple[str, float, float | None]]) -> list[str]:
    lines = ["| | seconds | × baseline |", "|---|---:|---:|"]
    for name, seconds, base in rows:
        ratio = f"{seconds / base:.2f}" if base else "–"
        lines.append(f"| {name} | {seconds:.2f} | {ratio} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    try:
        run(args.write)
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


def run(write: Path | None) -> None:
    work = STATE / "work"
    work.mkdir(parents=True)
    key = make_ssh_key(work)
    repo = make_app_repo(work / "demo")
    with netns_hosts(2, key, work / "hosts") as hosts, prefect_test_harness(120):
        started = time.monotonic()
        manual = by_hand(repo, hosts, key, repo.v1, work)
        manual_total = time.monotonic() - started
        configure(repo, hosts, key)
        cold_total, cold = pipeline("v1")
        second_total, _ = pipeline("v2")
        cached_total, cached = pipeline("v1")
    report = [
        "# Benchmark: deploy of the example app to two SSH hosts",
        "",
        f"`bench/deploy_steps.py`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores. "
        "Baseline: the same commit deployed by a sequential hand-written script in the same run.",
        "",
        "## Whole deploy",
        "",
        *table(
            [
                ("baseline (by hand, 2 hosts one after the other)", manual_total, None),
                ("pipeline, first deploy (build)", cold_total, manual_total),
                ("pipeline, new commit (build)", second_total, manual_total),
                ("pipeline, commit already built (cache)", cached_total, manual_total),
            ]
        ),
        "",
        "## Pipeline steps, first deploy (v1)",
        "",
        *table([(name, seconds, manual.get(name)) for name, seconds in cold.items()]),
        "",
        "## Pipeline steps, redeploy of a built commit",
        "",
        *table([(name, seconds, cold.get(name)) for name, seconds in cached.items()]),
        "",
        "(× baseline here: against the first deploy's step.)",
        "",
        "## Baseline steps",
        "",
        *table([(name, seconds, None) for name, seconds in manual.items()]),
        "",
        "Pipeline totals include Prefect's own overhead (flow and task run bookkeeping, reporting,"
        " pruning); the flow itself runs in-process here, so runner polling is not included.",
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if write:
        write.write_text(text)


if __name__ == "__main__":
    main()
