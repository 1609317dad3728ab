"""The benchmark (bench/run.sh) runs end to end on one host and writes its report.

No timing is asserted: this only keeps the harness working as the product changes. It runs the
bench's ``--quick`` mode (no warm-up, no promotion, no restarts), which takes about a minute and
a half on an idle 2-core machine.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.testbed.hosts import REPO_ROOT, live_namespaces, missing_requirements

pytestmark = pytest.mark.e2e


def test_the_benchmark_runs_on_one_host(tmp_path: Path) -> None:
    missing = missing_requirements()
    if missing:
        pytest.fail(f"the bench needs: {', '.join(missing)}")
    report, raw = tmp_path / "benchmarks.md", tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
    proc = subprocess.Popen(
        [
            str(REPO_ROOT / "bench" / "run.sh"),
            "--hosts=1",
            "--rounds=1",
            "--quick",
            "--timeout=200",
            f"--write={report}",
            f"--json={raw}",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:  # the bench cleans up on SIGTERM
            proc.terminate()
            proc.communicate(timeout=120)
    # run.sh execs the bench, whose pid names its hosts (tb<pid hex>-N): none may be left.
    assert [n for n in live_namespaces() if n.startswith(f"tb{proc.pid:x}-")] == []
    assert proc.returncode == 0, output[-4000:]

    results = json.loads(raw.read_text())
    assert results["failures"] == []
    kinds = {(d["kind"], d["via"]) for d in results["deploys"] if d["ok"]}
    assert {("cold", "cli"), ("redeploy", "cli"), ("trigger", "slack"), ("trigger", "webhook")} <= (
        kinds
    )
    assert results["baselines"] and all(b["ok"] for b in results["baselines"])
    cold = next(d for d in results["deploys"] if d["kind"] == "cold")
    assert {group.split()[0] for group in (t["name"] for t in cold["tasks"])} >= {
        "check",
        "build",
        "upload",
        "activate",
        "health",
    }
    text = report.read_text()
    for heading in ("## Targets", "## Where a deploy's seconds go", "### Timeline"):
        assert heading in text
    assert "cold deploy, 1 host" in text


def test_the_burst_benchmark_runs_on_both_databases(tmp_path: Path) -> None:
    """``bench/run.sh --burst-only``, small: every request becomes one run, on SQLite and on
    PostgreSQL, and the burst section of an existing page is replaced, the rest kept."""
    page, raw = tmp_path / "benchmarks.md", tmp_path / "results.json"
    page.write_text("# Benchmarks\n\n## Targets\n\nkept\n\n## Re-running\n\nkept too\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
    proc = subprocess.run(
        [
            str(REPO_ROOT / "bench" / "run.sh"),
            "--burst-only",
            "--burst-each=4",
            "--rounds=1",
            "--timeout=400",
            f"--write={page}",
            f"--json={raw}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=460,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    bursts = json.loads(raw.read_text())["burst"]
    assert [b["database"] for b in bursts] == ["sqlite", "postgresql"]
    for b in bursts:
        assert (b["sent"], b["accepted"], b["runs"], b["missing"], b["doubled"]) == (8, 8, 8, 0, 0)
        assert b["slack_links"] == 4 and b["last_started"] is not None
    text = page.read_text()
    assert (
        text.index("## Targets")
        < text.index("## A burst of requests")
        < text.index("## Re-running")
    )
    assert text.count("kept") == 2 and "| postgresql | 8 of 8 |" in text
