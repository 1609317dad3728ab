"""What the bench watches from the side while deploys run, by reading /proc only.

- :class:`RunMemory`: the peak memory of every deploy run's process (``VmHWM``, and ``Pss``,
  which counts pages shared with the runner's forkserver once, not in full) and of the
  processes it starts (the Maven JVM). A run's pid is in ``$CHATOPS_HOME/runs/<id>.pid`` while it
  runs.
- :class:`JvmWatch`: for each test host, the Tomcat JVM (``/srv/app/tomcat/tomcat.pid`` in the
  host's root) — its start time, its CPU time (utime+stime) and the time its threads waited on
  a run queue (``/proc/<pid>/task/*/schedstat``) — plus the machine's CPU (``/proc/stat``) and
  CPU pressure (``/proc/pressure/cpu``), sampled every 50 ms, so that each host's restart-to-
  healthy interval can afterwards be split into time on a CPU and time waiting.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.system import descendants, status_kb

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Boot time as an epoch, to 10 ms (/proc/stat's btime is whole seconds: too coarse here).
BOOT = time.time() - float(Path("/proc/uptime").read_text().split()[0])


def _pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class RunPeak:
    pid: int
    hwm_kb: int = 0
    pss_kb: int = 0
    child_hwm_kb: int = 0
    child: str = ""
    exited: float | None = None  # epoch when the process was first seen gone


class RunMemory(threading.Thread):
    """Samples every deploy run's process (and its children) every ``interval`` seconds."""

    def __init__(self, home: Path, interval: float = 0.25) -> None:
        super().__init__(name="run-memory", daemon=True)
        self.runs_dir = home / "runs"
        self.interval = interval
        self.peaks: dict[str, RunPeak] = {}
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        tick = 0
        while not self._halt.wait(self.interval):
            tick += 1
            for peak in self.peaks.values():
                if peak.exited is None and not _alive(peak.pid):
                    peak.exited = time.time()
            try:
                records = list(self.runs_dir.glob("*.pid"))
            except OSError:
                continue
            for record in records:
                try:
                    pid = int(record.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
                peak = self.peaks.setdefault(record.stem, RunPeak(pid))
                peak.hwm_kb = max(peak.hwm_kb, status_kb(pid, "VmHWM") or 0)
                peak.pss_kb = max(peak.pss_kb, _pss_kb(pid) or 0)
                if tick % 4:  # the children (a scan of /proc) once a second: it costs more
                    continue
                for child in descendants(pid):
                    hwm = status_kb(child, "VmHWM") or 0
                    if hwm > peak.child_hwm_kb:
                        peak.child_hwm_kb = hwm
                        with contextlib.suppress(OSError):
                            peak.child = Path(f"/proc/{child}/comm").read_text().strip()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cpu_line() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # up to steal; guest is included in user
    return total - idle, total


def _psi_some_us() -> int | None:
    try:
        line = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(line.rsplit("total=", 1)[1])


def _jvm_stat(pid: int) -> tuple[float, float] | None:
    """(start epoch, utime+stime seconds) of ``pid``; None when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return BOOT + int(fields[19]) / CLK_TCK, cpu


def _thread_wait(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting on a run queue), summed over the live threads."""
    run = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0.0
    for tid in tasks:
        try:
            parts = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        except OSError:
            continue
        run += int(parts[0])
        wait += int(parts[1])
    return run / 1e9, wait / 1e9


@dataclass
class Jvm:
    pid: int
    host: str
    started: float  # epoch
    samples: list[tuple[float, float]] = field(default_factory=list)  # (epoch, cpu s)
    waits: list[tuple[float, float, float]] = field(default_factory=list)  # (epoch, run, wait)
    gone: float | None = None

    def cpu_at(self, when: float) -> float | None:
        return _interpolate([(t, c) for t, c in self.samples], when)

    def wait_at(self, when: float) -> float | None:
        return _interpolate([(t, w) for t, _, w in self.waits], when)


def _interpolate(series: list[tuple[float, float]], when: float) -> float | None:
    if not series:
        return None
    times = [t for t, _ in series]
    i = bisect.bisect_left(times, when)
    if i == 0:
        return series[0][1]
    if i >= len(series):
        return series[-1][1]
    (t0, v0), (t1, v1) = series[i - 1], series[i]
    return v0 + (v1 - v0) * (when - t0) / (t1 - t0) if t1 > t0 else v1


class JvmWatch(threading.Thread):
    """Samples the Tomcat JVMs of ``hosts`` (address -> host root) and the machine's CPU."""

    def __init__(self, hosts: dict[str, Path], interval: float = 0.05) -> None:
        super().__init__(name="jvm-watch", daemon=True)
        self.hosts = hosts
        self.interval = interval
        self.jvms: dict[int, Jvm] = {}
        self.machine: list[tuple[float, int, int, int | None]] = []  # epoch, busy, total, psi
        self.own_cpu = 0.0  # CPU seconds this sampling thread used
        self._halt = threading.Event()

    def __enter__(self) -> JvmWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            self._sample()
        finally:
            self.own_cpu = time.thread_time()

    def _sample(self) -> None:
        tick = 0
        while not self._halt.is_set():
            now = time.time()
            busy, total = _cpu_line()
            self.machine.append((now, busy, total, _psi_some_us()))
            for address, root in self.hosts.items():
                try:
                    pid = int((root / "tomcat" / "tomcat.pid").read_text().strip())
                except (OSError, ValueError):
                    pid = None
                if pid and pid not in self.jvms:
                    stat = _jvm_stat(pid)
                    if stat:
                        self.jvms[pid] = Jvm(pid, address, stat[0])
                for jvm in self.jvms.values():
                    if jvm.host != address or jvm.gone:
                        continue
                    stat = _jvm_stat(jvm.pid)
                    if stat is None:
                        jvm.gone = now
                        continue
                    jvm.samples.append((now, stat[1]))
                    if tick % 10 == 0 or len(jvm.samples) == 1:  # threads: twice a second
                        run, wait = _thread_wait(jvm.pid)
                        jvm.waits.append((now, run, wait))
            tick += 1
            self._halt.wait(max(0.0, self.interval - (time.time() - now)))

    def jvm_for(self, host: str, after: float) -> Jvm | None:
        """The first JVM of ``host`` started at or after ``after`` (epoch)."""
        found = [j for j in self.jvms.values() if j.host == host and j.started >= after - 0.05]
        return min(found, key=lambda j: j.started) if found else None

    def old_jvm_gone(self, host: str, new_start: float) -> float | None:
        """When the JVM that ran on ``host`` before the one started at ``new_start`` ended."""
        old = [
            j
            for j in self.jvms.values()
            if j.host == host and j.started < new_start - 0.05 and j.gone
        ]
        return max(j.gone for j in old) if old else None

    def machine_between(self, start: float, end: float) -> tuple[float | None, float | None]:
        """(share of both CPUs busy, share of time some task waited for a CPU) in [start, end]."""
        inside = [m for m in self.machine if start <= m[0] <= end]
        if len(inside) < 2:
            return None, None
        first, last = inside[0], inside[-1]
        busy = (last[1] - first[1]) / max(1, last[2] - first[2])
        psi = None
        if first[3] is not None and last[3] is not None:
            psi = (last[3] - first[3]) / 1e6 / max(1e-6, last[0] - first[0])
        return busy, psi


def restart_profile(
    watch: JvmWatch, host: str, restart_at: float, healthy_at: float
) -> dict[str, float | None] | None:
    """One host's restart → healthy, split into what the new JVM did and what the machine did."""
    jvm = watch.jvm_for(host, restart_at)
    if jvm is None:
        return None
    cpu = jvm.cpu_at(healthy_at)
    busy, psi = watch.machine_between(restart_at, healthy_at)
    wait = jvm.wait_at(healthy_at)
    old_gone = watch.old_jvm_gone(host, jvm.started)
    return {
        "restart_to_healthy": healthy_at - restart_at,
        "stop_old": (old_gone - restart_at) if old_gone and old_gone >= restart_at else None,
        "jvm_to_healthy": healthy_at - jvm.started,
        "jvm_cpu": cpu,
        "jvm_runqueue_wait": wait,
        "machine_busy": busy,
        "cpu_pressure": psi,
    }


def tomcat_cores(roots: list[Path], window: float = 0.5) -> float:
    """How many cores the Tomcat JVMs of these host roots used over the next ``window`` s."""

    def cpu() -> float:
        total = 0.0
        for root in roots:
            try:
                pid = int((root / "tomcat" / "tomcat.pid").read_text().strip())
            except (OSError, ValueError):
                continue
            stat = _jvm_stat(pid)
            total += stat[1] if stat else 0.0
        return total

    before = cpu()
    time.sleep(window)
    return (cpu() - before) / window


def quiesce(roots: list[Path], timeout: float = 15.0) -> float:
    """Wait until the hosts' JVMs are idle (under 0.05 core, plus 0.02 per JVM) or ``timeout``;
    return the seconds waited. A restarted JVM keeps compiling after it first answers."""
    started = time.monotonic()
    below = 0.05 + 0.02 * len(roots)
    while time.monotonic() - started < timeout and tomcat_cores(roots) >= below:
        pass
    return time.monotonic() - started
