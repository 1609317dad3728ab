"""How long Slack and GitHub wait for the gateway's answer, against a real Prefect server.

Set-up, all on 127.0.0.1 and torn down at the end: a Prefect test server
(``prefect_test_harness``, SQLite), a small configuration (app ``shop`` with a ``staging``
environment), the ``deploy/chatops`` deployment registered but not served (runs are created and
stay scheduled, so nothing is deployed), a receiver for ``response_url`` posts, and the gateway
itself as ``python -m chatops.gateway`` under uvicorn.

Then, one request at a time over a kept-alive connection, it times:

* ``GET /healthz`` — the baseline: uvicorn and FastAPI, no work;
* slash ``help`` — signature check and parsing, no Prefect call;
* slash ``shop@main to staging`` — config from memory, a lock read and a flow-run create;
* webhook ``deployment`` — signature over ~7 KB, a lock read and a flow-run create;
* webhook ``push`` to a branch nothing auto-deploys — signature and routing only.

Every deploy request is new (fresh trigger id / deployment id), so each one creates a flow run.
It prints median, p99 and max per kind, each as a ratio to the baseline measured in the same
run, and how many answers missed the 2 s budget ("Starting…" replies). Usage::

    .venv/bin/python bench/gateway_latency.py [--requests 300]

It stops by itself: every request has a 10 s timeout and the whole run a time limit.
"""

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="chatops-bench-prefect-"))
os.environ.update(
    DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING"
)

SLACK_SECRET = "bench-slack-secret"
GITHUB_SECRET = "bench-github-secret"
FIXTURES = Path(os.environ.get("CHATOPS_FIXTURES", ROOT.parent / "shared" / "fixtures"))
TIME_LIMIT_SECONDS = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def response_url_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A stand-in for Slack's response_url: records each POST body."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/response", received
    finally:
        server.shutdown()
        server.server_close()


def configure() -> None:
    from blocks import App, Environment
    from flows.deploy import deploy

    App(repository="acme/shop", default_environment="staging", environments=["staging"]).save(
        "shop", overwrite=True
    )
    Environment(
        hosts=["web-1", "web-2"],
        ssh_private_key="unused",
        deploy_path="/srv/app",
        restart_command="true",
    ).save("shop-staging", overwrite=True)
    deploy.to_deployment(name="chatops").apply()


@contextmanager
def running_gateway(api_url: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_API_URL=api_url,
        CHATOPS_GATEWAY_PORT=str(port),
        CHATOPS_SLACK_SIGNING_SECRET=SLACK_SECRET,
        CHATOPS_GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
        PYTHONPATH=str(ROOT),
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatops.gateway"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).json()["configuration_loaded"]:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway did not start; see {log}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def slash(text: str, response_url: str, number: int) -> tuple[bytes, dict[str, str]]:
    from chatops.signatures import sign_slack

    body = urllib.parse.urlencode(
        {
            "command": "/deploy",
            "text": text,
            "user_id": "U0BENCH001",
            "channel_id": "C0BENCH001",
            "team_id": "T0BENCH001",
            "response_url": response_url,
            "trigger_id": f"bench.{number}.{time.time_ns()}",
        }
    ).encode()
    ts = str(int(time.time()))
    return body, {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign_slack(body, ts, SLACK_SECRET),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def webhook(event: str, payload: dict) -> tuple[bytes, dict[str, str]]:
    from chatops.signatures import sign_github

    body = json.dumps(payload).encode()
    return body, {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": f"bench-{time.time_ns()}",
        "X-Hub-Signature-256": sign_github(body, GITHUB_SECRET),
        "Content-Type": "application/json",
    }


def measure(
    n: int,
    send: Callable[[int], httpx.Response],
    check: Callable[[httpx.Response], None],
    deadline: float,
) -> list[float]:
    times = []
    for i in range(n):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        response = send(i)
        times.append(time.perf_counter() - started)
        check(response)
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per kind")
    n = parser.parse_args().requests
    deadline = time.monotonic() + TIME_LIMIT_SECONDS

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    deployment = json.loads((FIXTURES / "github_webhooks/deployment.payload.json").read_text())
    deployment["repository"]["full_name"] = "acme/shop"
    deployment["deployment"]["environment"] = "staging"
    push = json.loads((FIXTURES / "github_webhooks/push.with-new-branch.payload.json").read_text())
    push["repository"]["full_name"] = "acme/shop"
    log = Path(tempfile.mkdtemp(prefix="chatops-bench-")) / "gateway.log"
    late = {"slash deploy": 0}
    deployment_ids = itertools.count(10_000_000)

    with (
        prefect_test_harness(server_startup_timeout=120),
        response_url_receiver() as (response_url, received),
    ):
        configure()
        with (
            running_gateway(PREFECT_API_URL.value(), log) as base,
            httpx.Client(base_url=base, timeout=10) as http,
        ):

            def ok(response: httpx.Response) -> None:
                assert response.status_code in (200, 202), response.text

            def slash_ok(response: httpx.Response) -> None:
                ok(response)
                if response.json()["text"].startswith("Starting"):
                    late["slash deploy"] += 1

            def deployment_event(i: int) -> httpx.Response:
                deployment["deployment"]["id"] = next(deployment_ids)  # a new one each time
                body, headers = webhook("deployment", deployment)
                return http.post("/github/webhook", content=body, headers=headers)

            kinds: dict[
                str, tuple[Callable[[int], httpx.Response], Callable[[httpx.Response], None]]
            ] = {
                "GET /healthz (baseline)": (lambda i: http.get("/healthz"), ok),
                "slash help": (
                    lambda i: http.post(
                        "/slack/commands",
                        content=(s := slash("help", response_url, i))[0],
                        headers=s[1],
                    ),
                    ok,
                ),
                "slash deploy": (
                    lambda i: http.post(
                        "/slack/commands",
                        content=(s := slash("shop@main to staging", response_url, i))[0],
                        headers=s[1],
                    ),
                    slash_ok,
                ),
                "webhook deployment": (deployment_event, ok),
                "webhook push (ignored)": (
                    lambda i: http.post(
                        "/github/webhook", content=(w := webhook("push", push))[0], headers=w[1]
                    ),
                    ok,
                ),
            }
            for _, (send, check) in kinds.items():  # warm-up: connections, imports, caches
                for i in range(5):
                    check(send(-1 - i))
            results = {
                name: measure(n, send, check, deadline) for name, (send, check) in kinds.items()
            }
            time.sleep(1)

    base_median = statistics.median(results["GET /healthz (baseline)"])
    base_p99 = p99(results["GET /healthz (baseline)"])
    print(f"gateway latency, {n} sequential requests per kind, 127.0.0.1, Prefect test server")
    print(
        f"{'kind':<26}{'n':>5}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}"
        f"{'median ×':>10}{'p99 ×':>8}"
    )
    for name, times in results.items():
        median, tail = statistics.median(times), p99(times)
        print(
            f"{name:<26}{len(times):>5}{median * 1000:>11.1f}{tail * 1000:>9.1f}"
            f"{max(times) * 1000:>9.1f}{median / base_median:>10.1f}{tail / base_p99:>8.1f}"
        )
    print(
        f"slash deploys answered 'Starting…' (over the 2 s budget): {late['slash deploy']}; "
        f"response_url posts received: {len(received)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
