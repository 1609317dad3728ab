"""Processes of this machine, named so that a reused pid is not mistaken for them: the pid and
the process's start time (``<pid> <ticks since boot>``)."""

import os
from pathlib import Path


def started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot); None when there is no such
    process (or only its zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def this_process() -> str:
    """This process, as :func:`running` reads it back."""
    return f"{os.getpid()} {started(os.getpid())}"


def running(process: str) -> bool:
    """Whether the process named by :func:`this_process` (in this or another process) runs."""
    pid, _, when = process.strip().partition(" ")
    return pid.isdigit() and started(int(pid)) == when
