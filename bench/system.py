"""The system as a user runs it: ``chatops up`` in its own CHATOPS_HOME, the ``chatops`` CLI in
fresh processes, the gateway over HTTP, and the Prefect REST API for what happened.

Standard library only (plus the project's stdlib-only test-bed helpers): the harness never
imports Prefect, so it measures the product, not itself. Every wait has a timeout.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.net import free_port
from adapters.processes import cmdline, stat
from chatops.settings import DEPLOYMENTS

CHATOPS = Path(sys.executable).parent / "chatops"
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PR_SET_PDEATHSIG = 1
RUN_ID = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SERVICES = {"server": "Prefect server", "postgres": "PostgreSQL", "gateway": "gateway"}
SERVICES["runner"] = "runner and its flow runs"


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen (in time)."""


def http(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout=10.0
) -> tuple[int, bytes]:
    """One HTTP call on loopback (no proxies); HTTP errors are returned, not raised."""
    if not url.startswith("http://127.0.0.1:"):
        raise BenchError(f"refusing to talk to {url}: the bench only uses 127.0.0.1")
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ts(text: str | None) -> float | None:
    """A Prefect timestamp as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def wait_for(what: str, predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = None
        with contextlib.suppress(OSError):
            value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _pdeathsig() -> None:
    """In a child: SIGTERM when the bench dies, so nothing outlives a killed bench."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if fields := stat(entry):
            tree.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = tree.get(todo.pop(), [])
        found += children
        todo += children
    return found


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of ``pids``, the ended children they waited for included."""
    ticks = 0
    for pid in pids:
        if fields := stat(pid):
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class CliResult:
    args: list[str]
    rc: int
    stdout: str
    stderr: str
    started: float  # epoch, just before the process was spawned
    wall: float  # seconds until it exited

    @property
    def run_id(self) -> str | None:
        match = RUN_ID.search(self.stdout)
        return match.group(1) if match else None


@dataclass
class Up:
    """``chatops up --port <free>`` with its own CHATOPS_HOME, as a user starts it."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # more ``chatops up`` options, e.g. ("--database", url)
    port: int = 0
    gateway_port: int = 0
    process: subprocess.Popen | None = None
    log: Path | None = None
    spawned: float = 0.0
    starts: int = 0
    _token: str = ""

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def token(self) -> str:
        """The CLI token of user "bench", made with ``chatops users add`` on first use."""
        if not self._token:
            env = self.shell_env()
            # a home kept from an earlier run may know "bench" already: give it a new token
            subprocess.run([str(CHATOPS), "users", "remove", "bench"], env=env, capture_output=True)
            added = [str(CHATOPS), "users", "add", "bench"]
            quiet = {"text": True, "stderr": subprocess.DEVNULL}  # it says it made a token
            self._token = subprocess.check_output(added, env=env, **quiet).strip()
        return self._token

    def api_headers(self) -> dict[str, str]:
        """JSON, with the credential the Prefect server of ``chatops up`` wants (its
        ``$CHATOPS_HOME/secrets/prefect-api-auth``, as the CLI reads it)."""
        auth = (self.home / "secrets" / "prefect-api-auth").read_text().strip()
        return {**_JSON, "Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}

    def env(self) -> dict[str, str]:
        port = {"CHATOPS_GATEWAY_PORT": str(self.gateway_port)}
        return {**self.shell_env(), **port, **self.extra_env}

    def start(self, wait_deployments: bool = True, timeout: float = 180) -> dict[str, float]:
        """Start it; return seconds from spawn to each milestone it reached."""
        if not self.port:
            self.port, self.gateway_port = free_port(), free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log = self.home.parent / f"up-{self.starts}.log"
        out = open(self.log, "wb")  # noqa: SIM115 - the child keeps it
        self.spawned = time.time()
        io = {"stdout": out, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
        argv = [str(CHATOPS), "up", "--port", str(self.port), *self.args]
        # its own session: Ctrl-C reaches the bench, which stops it in order
        self.process = subprocess.Popen(
            argv, env=self.env(), start_new_session=True, preexec_fn=_pdeathsig, **io
        )
        out.close()
        checks = {"up_line": lambda: "chatops is up" in self.output(), "gateway": self._gateway_ok}
        if wait_deployments:
            checks["deployments"] = self._deployments_ok
        milestones: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(milestones) < len(checks):
            if self.process.poll() is not None:
                raise BenchError(f"chatops up exited ({self.process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise BenchError(f"chatops up not ready after {timeout:.0f} s: {milestones}")
            for name, check in checks.items():
                if name not in milestones and check():
                    milestones[name] = time.time() - self.spawned
            time.sleep(0.05)
        return milestones

    def _gateway_ok(self) -> bool:
        with contextlib.suppress(OSError):
            return http("GET", f"{self.gateway}/healthz", timeout=1)[0] == 200
        return False

    def _deployments_ok(self) -> bool:
        """Every deployment the gateway starts runs of is registered and not paused."""
        with contextlib.suppress(OSError):
            headers = self.api_headers()
            status, body = http("POST", f"{self.api}/deployments/filter", b"{}", headers, timeout=2)
            found = json.loads(body) if status == 200 else []
            return [d["name"] for d in found if not d.get("paused")] == ["chatops"] * len(
                DEPLOYMENTS
            )
        return False

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def children(self) -> dict[str, int]:
        """pids of the server, its PostgreSQL, runner, gateway and the runner's forkserver."""
        marks = {"prefect server start": "server", "chatops.runner": "runner"}
        marks |= {"chatops.gateway": "gateway", "multiprocessing.forkserver": "forkserver"}
        marks["postgres -D"] = "postgres"
        found: dict[str, int] = {}
        for pid in descendants(self.process.pid) if self.process else []:
            found.update({name: pid for mark, name in marks.items() if mark in cmdline(pid)})
        return found

    def services_cpu(self) -> dict[str, float]:
        """CPU seconds so far of ``chatops up`` and each service, with everything under it."""
        found = {SERVICES[k]: v for k, v in self.children().items() if k in SERVICES}
        out = {name: cpu_seconds([pid, *descendants(pid)]) for name, pid in found.items()}
        return {**out, "chatops up": cpu_seconds([self.process.pid] if self.process else [])}

    def stop(self, grace: float = 60) -> None:
        """Ctrl-C as a person would; anything left after ``grace`` seconds is killed."""
        if not self.process:
            return
        family = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in family:  # a child that ignored its stop (or was orphaned) goes now
            with contextlib.suppress(OSError):
                if cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
        self.process = None

    # ------------------------------------------------------------------ the user's commands
    def shell_env(self) -> dict[str, str]:
        """A user's shell: no PREFECT_*/CHATOPS_* but CHATOPS_HOME, and no stored login."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
        home = {"CHATOPS_HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / "no-login")}
        return {**env, **home, "DO_NOT_TRACK": "1"}

    def cli(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
        """``chatops ARGS`` in a fresh process, found through CHATOPS_HOME as a shell does."""
        user = {"USER": "bench", "LOGNAME": "bench", "CHATOPS_TOKEN": self.token}
        env = {**self.shell_env(), **user, **(env or {})}
        argv = [str(CHATOPS), *args]
        kw = {"capture_output": True, "text": True, "stdin": subprocess.DEVNULL}
        started, t0 = time.time(), time.monotonic()
        proc = subprocess.run(argv, env=env, timeout=timeout, preexec_fn=_pdeathsig, **kw)
        wall = time.monotonic() - t0
        return CliResult(argv, proc.returncode, proc.stdout, proc.stderr, started, wall)

    def apply_config(self, config: dict[str, Any], env: dict[str, str]) -> float:
        """``chatops config apply`` of ``config`` (JSON is YAML); its wall time."""
        path = self.home.parent / "chatops.yaml"
        path.write_text(json.dumps(config, indent=1))
        applied = self.cli("config", "apply", str(path), timeout=120, env=env)
        if applied.rc != 0:
            raise BenchError(f"chatops config apply failed:\n{applied.stdout}\n{applied.stderr}")
        return applied.wall

    def ask(self, text: str) -> str:
        """The gateway's answer to a CLI command such as ``where demo`` ("" if it failed)."""
        body = json.dumps({"text": text}).encode()
        headers = {**_JSON, "Authorization": f"Bearer {self.token}"}
        status, answer = http("POST", f"{self.gateway}/cli/commands", body, headers)
        return json.loads(answer).get("text", "") if status == 200 else ""

    # ------------------------------------------------------------------ Prefect REST
    def flow_run(self, run_id: str) -> dict:
        status, body = http("GET", f"{self.api}/flow_runs/{run_id}", headers=self.api_headers())
        if status != 200:
            raise BenchError(f"flow run {run_id}: HTTP {status} {body[:200]!r}")
        return json.loads(body)

    def api_post(self, path: str, payload: dict) -> Any:
        body_bytes = json.dumps(payload).encode()
        status, body = http("POST", f"{self.api}{path}", body_bytes, self.api_headers())
        if status not in (200, 201):
            raise BenchError(f"POST {path}: HTTP {status} {body[:200]!r}")
        return json.loads(body)

    def task_runs(self, run_id: str) -> list[dict]:
        query = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
        return self.api_post("/task_runs/filter", {**query, "sort": "EXPECTED_START_TIME_ASC"})

    def wait_final(self, run_id: str, timeout: float = 600) -> dict:
        final = lambda: r if state(r := self.flow_run(run_id)) in FINAL else None  # noqa: E731
        return wait_for(f"flow run {run_id} to end", final, timeout, interval=0.25)


def state(run: dict) -> str | None:
    return (run.get("state") or {}).get("type")


_JSON = {"Content-Type": "application/json"}
