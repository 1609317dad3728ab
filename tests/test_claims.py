"""Who reports a dead run's end: a claim names its process, and one whose process died before
it told everyone is taken over (flows.report.claim_report)."""

import subprocess
import sys

from adapters.processes import running, this_process
from flows.report import TELLING, abandoned


def a_finished_process() -> str:
    """The name (pid and start time) a process had, read by itself, after it exited."""
    script = "from adapters.processes import this_process; print(this_process())"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_process_is_running_until_it_exits() -> None:
    assert running(this_process())
    assert not running(a_finished_process())
    assert not running("") and not running("12 garbage")


def test_only_a_claim_whose_process_died_is_abandoned() -> None:
    stamp = "2026-12-07T11:00:00Z"
    assert abandoned(f"{stamp} {TELLING} {a_finished_process()}")
    assert not abandoned(f"{stamp} {TELLING} {this_process()}")  # still telling
    assert not abandoned(stamp)  # everyone was told
    assert not abandoned("")
