"""A benchmark's result file: raw samples, the parameters they were taken with, and the
machine they were taken on, read from the machine while the benchmark ran.

One file per scenario (``results/<scenario>.json``); ``python -m bench.report`` renders the
page from them. A series is one row of a table: every sample in order, the warm-up samples
apart (never in the statistics), and the 1-minute load average when each sample ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class Result:
    """What one scenario measured, as it is written to JSON."""

    def __init__(self, scenario: str, title: str, command: str, parameters: dict) -> None:
        self.data: dict[str, Any] = {"scenario": scenario, "title": title, "command": command}
        self.data.update(parameters=parameters, machine=machine_facts(), started=time.time())
        self.data.update(series=[], comparisons=[], failures=[], raw=[])
        self._load = LoadSampler()

    def add(
        self, table: str, name: str, value: float | None, unit: str = "s", warmup: bool = False
    ) -> None:
        """One sample of a row (None, e.g. a failed deploy, is not a sample)."""
        if value is None:
            return
        found = [s for s in self.data["series"] if (s["table"], s["name"]) == (table, name)]
        if not found:
            found.append(dict(table=table, name=name, unit=unit, warmup=[], samples=[], load1=[]))
            self.data["series"].append(found[0])
        row = found[0]
        row["warmup" if warmup else "samples"].append(round(value, 4))
        if not warmup:
            row["load1"].append(round(os.getloadavg()[0], 2))

    def compare(self, name: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        """A ratio row: series ``a`` ÷ series ``b`` (each given as (table, name))."""
        self.data["comparisons"].append({"name": name, "a": list(a), "b": list(b)})

    def write(self, path: Path) -> None:
        """Write it; a run cut short (interrupted, or failing) says so and keeps what it has."""
        if (cut := sys.exc_info()[1]) is not None:
            self.data["cut_short"] = f"{type(cut).__name__}: {cut}"
        self.data["finished"] = time.time()
        end = {"load_end": list(os.getloadavg()), "load_during": self._load.stop()}
        self.data["machine"] |= {**end, "cpu_pressure_end": _first_line("/proc/pressure/cpu")}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.data, indent=1, default=str) + "\n")


class LoadSampler:
    """The 1-minute load average every 5 s while the benchmark runs: the machine is shared."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._done.wait(every):
            self.samples.append(round(os.getloadavg()[0], 2))

    def stop(self) -> list[float]:
        self._done.set(), self._thread.join(timeout=10)
        return self.samples


def machine_facts() -> dict[str, Any]:
    """What the numbers depend on, read from this machine now."""
    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(_field("/proc/meminfo", "MemTotal").split()[0]) / 1024**2, 1),
        "kernel": platform.release(),
        "cpu_model": _field("/proc/cpuinfo", "model name") or platform.machine(),
        "python": platform.python_version(),
        "load_start": list(os.getloadavg()),
        "cpu_pressure_start": _first_line("/proc/pressure/cpu"),
        "commit": COMMIT,
        "java": _run(["java", "-version"], stderr=True),
        "mvn": _run(["mvn", "-B", "-v"]),
    }
    for package in ("prefect", "fabric", "chatops-deploy", "ansible-core"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            facts[package] = metadata.version(package)
    return facts


def _run(argv: list[str], stderr: bool = False) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr if stderr else proc.stdout).split("\n")
    return lines[0].strip()


def _field(path: str, key: str) -> str:
    """The value of ``key: value`` in /proc/meminfo or /proc/cpuinfo."""
    lines = Path(path).read_text().splitlines()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), "")


def _first_line(path: str) -> str:
    try:
        return Path(path).read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""


def command_line() -> str:
    return "bench/run.sh " + " ".join(sys.argv[1:])


COMMIT = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])  # the code that runs
