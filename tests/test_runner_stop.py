"""The runner's stop and an abort: each run gets ``CHATOPS_STOP_GRACE_SECONDS`` to end after its
SIGTERM, then SIGKILL.

Real processes: one that ends on SIGTERM, one that ignores it.
"""

import asyncio
import subprocess
import sys
import threading
import time
import uuid

from prefect.runner._process_manager import ProcessHandle, ProcessManager

from chatops import up
from chatops.runner import patient_kills
from chatops.settings import STOP_GRACE_SECONDS, stop_grace_seconds

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True)"
    "; time.sleep(60)"
)
ENDS_ON_SIGTERM_AFTER_1_S = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1), sys.exit(0)))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)"
)


def started(code: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    threading.Thread(target=process.wait, daemon=True).start()  # reap it: a zombie looks alive
    return process


def stop(process: subprocess.Popen, grace: float) -> float:
    """Stop ``process`` the way the runner does; how long that took."""

    async def run() -> float:
        processes = ProcessManager()
        run_id = uuid.uuid4()
        await processes.add(run_id, ProcessHandle(process))  # type: ignore[arg-type]
        began = time.monotonic()
        patient_kills(processes, lambda: began + grace)
        await processes.kill(run_id, grace_seconds=30.0)  # what Prefect's cancellation passes
        return time.monotonic() - began

    return asyncio.run(run())


def test_a_run_that_ignores_sigterm_is_killed_when_its_grace_is_over() -> None:
    process = started(IGNORES_SIGTERM)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    took = stop(process, grace=1.0)
    assert process.wait(timeout=5) == -9
    assert 1.0 <= took < 3.0, took


def test_a_run_that_ends_within_its_grace_is_waited_for_past_prefects_30_s() -> None:
    # the grace is longer than what the run takes; the stop returns as soon as it has ended
    process = started(ENDS_ON_SIGTERM_AFTER_1_S)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    took = stop(process, grace=600.0)
    assert process.wait(timeout=5) == 0
    assert 1.0 <= took < 2.5, took


def test_the_grace_is_a_setting_and_chatops_up_waits_longer_for_the_runner(monkeypatch) -> None:
    assert stop_grace_seconds() == STOP_GRACE_SECONDS == 600.0
    monkeypatch.setenv("CHATOPS_STOP_GRACE_SECONDS", "45")
    assert stop_grace_seconds() == 45.0
    assert up.STOP_SECONDS["runner"] == STOP_GRACE_SECONDS + up.RUNNER_STOP_MARGIN
