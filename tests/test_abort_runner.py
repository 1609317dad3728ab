"""An aborted run's process gets the runner's grace after its SIGTERM, then SIGKILL (real
processes; the full story is in test_abort_e2e.py)."""

import asyncio
import subprocess
import threading
import time
import uuid

from prefect.runner._process_manager import ProcessHandle, ProcessManager

from chatops.runner import patient_kills


def started(script: str) -> tuple[ProcessManager, uuid.UUID, subprocess.Popen[bytes]]:
    """A process manager tracking ``sh -c script`` under a new run id; a thread reaps it."""
    process = subprocess.Popen(["sh", "-c", script])
    threading.Thread(target=process.wait, daemon=True).start()
    processes, run_id = ProcessManager(), uuid.uuid4()
    processes._process_map[run_id] = ProcessHandle(process)  # type: ignore[arg-type]
    time.sleep(0.3)  # the trap is set
    return processes, run_id, process


def test_a_run_that_ends_after_its_sigterm_is_waited_for_past_prefects_30_s() -> None:
    processes, run_id, process = started(
        'trap "sleep 1.5; exit 0" TERM; while :; do sleep 0.1; done'
    )
    patient_kills(processes, grace=10)
    asked = time.monotonic()
    asyncio.run(processes.kill(run_id, grace_seconds=0.1))  # Prefect would pass its 30 s
    assert process.wait(timeout=5) == 0, "it ended by itself, not killed"
    assert 1.4 < time.monotonic() - asked < 3


def test_a_run_that_ignores_its_sigterm_is_killed_when_the_grace_is_over() -> None:
    processes, run_id, process = started('trap "" TERM; while :; do sleep 0.1; done')
    patient_kills(processes, grace=0.5)
    asked = time.monotonic()
    asyncio.run(processes.kill(run_id))
    assert process.wait(timeout=5) == -9
    assert time.monotonic() - asked < 2
