"""``chatops up``: the whole system on one machine, on embedded defaults.

It starts, as child processes sharing one environment:

1. a Prefect server on SQLite under ``$CHATOPS_HOME/prefect`` (skipped when ``PREFECT_API_URL``
   already points at a server),
2. the runner that serves the deploy flow (:mod:`chatops.runner`), polling every second,
3. the HTTP gateway for Slack and GitHub (:mod:`chatops.gateway`), when it is installed,

prints where the UI is, and stops them all, newest first, on Ctrl-C or SIGTERM, or as soon as
one of them dies.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from importlib.util import find_spec
from types import FrameType

from chatops.settings import paths

SERVER_START_SECONDS = 120
STOP_SECONDS = 15


class StartupError(RuntimeError):
    """A service did not come up."""


def base_environment(api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    home = paths()
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=env.get("PREFECT_HOME", str(home.prefect_home)),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_RUNNER_POLL_FREQUENCY=env.get("PREFECT_RUNNER_POLL_FREQUENCY", "1"),
        CHATOPS_HOME=str(home.home),
    )
    return env


def spawn(argv: list[str], env: Mapping[str, str]) -> subprocess.Popen:
    # Children get default signal handling even when we were started in the background.
    return subprocess.Popen(
        argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_healthy(api_url: str, process: subprocess.Popen, seconds: float) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(f"the Prefect server exited with code {process.returncode}")
        try:
            with opener.open(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise StartupError(f"the Prefect server did not answer on {api_url} in {seconds:.0f} s")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in reversed(processes):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_all(host: str, port: int) -> tuple[list[subprocess.Popen], str]:
    """Start the services; return them and the UI URL."""
    processes: list[subprocess.Popen] = []
    api_url = os.environ.get("PREFECT_API_URL") or f"http://{host}:{port}/api"
    env = base_environment(api_url)
    os.makedirs(env["PREFECT_HOME"], exist_ok=True)
    try:
        if not os.environ.get("PREFECT_API_URL"):
            server = spawn(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    host,
                    "--port",
                    str(port),
                ],
                env,
            )
            processes.append(server)
            wait_healthy(api_url, server, SERVER_START_SECONDS)
        processes.append(spawn([sys.executable, "-m", "chatops.runner"], env))
        if find_spec("chatops.gateway") is not None:
            processes.append(spawn([sys.executable, "-m", "chatops.gateway"], env))
    except BaseException:
        stop(processes)
        raise
    return processes, api_url.removesuffix("/api")


def run(host: str = "127.0.0.1", port: int = 4200) -> int:
    """Start everything and supervise it until a signal or a child's exit; return an exit code."""
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    processes, ui_url = start_all(host, port)
    print(f"chatops is up. Prefect UI: {ui_url}  (Ctrl-C stops everything)", flush=True)
    try:
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.2)
    finally:
        stop(processes)
    return 0 if stopping else 1
