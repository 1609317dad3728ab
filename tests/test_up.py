"""``chatops up``: the system starts on embedded defaults and Ctrl-C stops all of it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    with _opener.open(url, timeout=5) as response:
        return response.status, response.read()


def post_json(url: str, body: dict) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with _opener.open(request, timeout=5) as response:
        return json.loads(response.read())


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def test_up_serves_ui_and_flows_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, gateway_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(CHATOPS_HOME=str(tmp_path / "home"), CHATOPS_GATEWAY_PORT=str(gateway_port),
               DO_NOT_TRACK="1")
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "chatops.cli", "up", "--port", str(port)],
                              env=env, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: "chatops is up" in log.read_text(), 120), log.read_text()
        assert f"Prefect UI: {base}" in log.read_text()
        assert get(f"{base}/api/health")[0] == 200
        status, page = get(f"{base}/")
        assert status == 200 and b"<html" in page.lower()

        def served() -> bool:
            found = post_json(f"{base}/api/deployments/filter", {})
            return {d["name"] for d in found} >= {"chatops"} and len(found) == 2
        assert wait_for(served, 60), log.read_text()
        assert (tmp_path / "home" / "prefect").is_dir(), "the database lives under CHATOPS_HOME"

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
        with pytest.raises(OSError):
            get(f"{base}/api/health")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    leftovers = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
