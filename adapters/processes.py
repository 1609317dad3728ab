"""Processes of this machine, named so that a reused pid is not mistaken for them: the pid and
the process's start time (``<pid> <ticks since boot>``)."""

import os
from pathlib import Path


def stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent, process
    group, …); None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot); None when there is no such
    process (or only its zombie)."""
    fields = stat(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


def cmdline(pid: int) -> str:
    """The command line of process ``pid``, its arguments joined by spaces ("" when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` runs (a zombie waiting to be reaped does not)."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        fields = stat(entry)
        if fields is not None and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def this_process() -> str:
    """This process, as :func:`running` reads it back."""
    return f"{os.getpid()} {started(os.getpid())}"


def running(process: str) -> bool:
    """Whether the process named by :func:`this_process` (in this or another process) runs."""
    pid, _, when = process.strip().partition(" ")
    return pid.isdigit() and started(int(pid)) == when
