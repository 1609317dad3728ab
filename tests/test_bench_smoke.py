"""The benchmark runs, and docs/benchmarks.md is what its committed results render to.

No timing is asserted: the first test only keeps the harness working as the product changes
(``bench/run.sh deploy --quick``: 1 host, 1 round, no warm-up); the others check the renderer
on the committed results and on made-up ones.
"""

import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest

from bench import report
from tests.testbed.hosts import REPO_ROOT, live_namespaces, missing_requirements

RESULTS = sorted((REPO_ROOT / "results").glob("*.json"))


def run_bench(out: Path, *args: str, timeout: int) -> dict:
    """``bench/run.sh ARGS`` into ``out``; the result file of its one scenario. Checks that it
    succeeded and left no test host behind."""
    missing = missing_requirements()
    if missing:
        pytest.fail(f"the bench needs: {', '.join(missing)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
    proc = subprocess.Popen(
        [str(REPO_ROOT / "bench" / "run.sh"), *args, f"--out={out}", f"--timeout={timeout}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout + 40)
    finally:
        if proc.poll() is None:  # the bench cleans up on SIGTERM
            proc.terminate()
            proc.communicate(timeout=120)
    # run.sh execs the bench, whose pid names its hosts (tb<pid hex>-N): none may be left.
    assert [n for n in live_namespaces() if n.startswith(f"tb{proc.pid:x}-")] == []
    assert proc.returncode == 0, output[-4000:]
    result = json.loads((out / f"{args[0]}.json").read_text())
    assert result["failures"] == [] and "cut_short" not in result
    return result


@pytest.mark.e2e
def test_the_deploy_benchmark_runs_on_one_host(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "deploy", "--hosts=1", "--rounds=1", "--quick", timeout=200)
    samples = {s["name"]: s["samples"] for s in result["series"]}
    assert len(samples["script, 1 host"]) == len(samples["chatops cold, 1 host"]) == 1
    assert {"task: build", "task: health check", "task: upload"} <= samples.keys()
    assert result["machine"]["cpus"] == os.cpu_count() and result["machine"]["load_start"]
    page = tmp_path / "benchmarks.md"
    report.main([str(tmp_path / "deploy.json"), f"--page={page}"])
    assert "| chatops cold, 1 host | 1 |" in page.read_text()


@pytest.mark.e2e
def test_the_host_sweep_runs_on_one_and_two_light_hosts(tmp_path: Path) -> None:
    """Every deployer's wall time and CPU on both sides, and the slope per added host."""
    result = run_bench(tmp_path, "sweep", "--hosts=1,2", "--rounds=1", timeout=420)
    whos = ["script", "chatops"] + (["ansible"] if result["parameters"]["ansible"] else [])
    rows = {
        (s["table"].removeprefix("Host sweep: "), s["name"]): s["samples"] for s in result["series"]
    }
    for who, hosts in itertools.product(whos, ("1 host", "2 hosts")):
        for table in ("wall time, spawn to exit (s)", "hosts' CPU (CPU-s)"):
            assert len(rows[table, f"{who}, {hosts}"]) == 1
    assert rows["hosts' CPU (CPU-s)", "chatops, 2 hosts"][0] > 0
    control = rows["control-plane CPU (CPU-s)", "chatops, 2 hosts: Prefect server"]
    assert control[0] > 0  # the server's CPU is found and counted
    assert rows["what one chatops deploy writes to Prefect, per host", "task runs, 2 hosts"]
    slopes = {s["name"] for s in result["series"] if "added host" in s["table"] and s["samples"]}
    assert {f"{who}: wall time (s)" for who in whos} <= slopes


def test_the_committed_page_is_what_the_committed_results_render_to(tmp_path: Path) -> None:
    """``python -m bench.report results/*.json`` reproduces docs/benchmarks.md exactly."""
    assert RESULTS, "no committed results/*.json"
    page = tmp_path / "benchmarks.md"
    page.write_text((REPO_ROOT / "docs" / "benchmarks.md").read_text())
    report.main([*map(str, RESULTS), f"--page={page}"])
    assert page.read_text() == (REPO_ROOT / "docs" / "benchmarks.md").read_text()


def made_up(a: list[float], b: list[float]) -> dict:
    """A result file with two rows and their ratio."""
    machine = {"cpus": 2, "cpu_model": "x", "memory_gib": 1, "kernel": "k", "python": "3"}
    machine |= {"java": "j", "mvn": "m", "commit": "c", "load_start": [1, 1, 1]}
    machine |= {"load_end": [1, 1, 1], "load_during": [1.0]}
    rows = [
        {"table": "T", "name": name, "unit": "s", "warmup": [9.0], "samples": v}
        for name, v in (("a", a), ("b", b))
    ]
    return {
        "scenario": "deploy",
        "title": "Made up",
        "command": "c",
        "parameters": {},
        "machine": machine,
        "started": 0,
        "finished": 60,
        "failures": [],
        "series": rows,
        "comparisons": [{"name": "a ÷ b", "a": ["T", "a"], "b": ["T", "b"]}],
    }


def test_the_page_says_when_two_results_do_not_differ(tmp_path: Path) -> None:
    """Medians, ranges, warm-ups kept out; overlapping ranges are called not significant, and
    the text people wrote between the markers survives a new rendering."""
    page, raw = tmp_path / "benchmarks.md", tmp_path / "deploy.json"
    page.write_text("<!-- people: deploy -->\nWritten by a person.\n<!-- /people: deploy -->\n")
    raw.write_text(json.dumps(made_up([1.0, 2.0, 3.0], [2.5, 4.0, 6.0])))
    report.main([str(raw), f"--page={page}"])
    text = page.read_text()
    assert "| a | 3 | 2.00 | 1.00 – 3.00 | 1.00, 2.00, 3.00 (warm-up: 9.00) |" in text
    assert "| a ÷ b | 0.50× |" in text and "not significantly different" in text
    assert "Written by a person." in text and "_(not interpreted yet)_" in text

    raw.write_text(json.dumps(made_up([1.0, 1.1, 1.2], [2.5, 4.0, 6.0])))
    report.main([str(raw), f"--page={page}"])
    assert "ranges apart" in page.read_text() and "not significantly" not in page.read_text()
