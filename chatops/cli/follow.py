"""Follow a flow run from the terminal: each task run as it ends, then the run's final state.

Plain HTTP against the Prefect REST API (``GET /flow_runs/{id}``, ``POST /task_runs/filter``),
so the CLI starts in a fraction of a second. When the API stops answering (a server restart),
it says so once, keeps asking, and carries on where it was.
"""

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO

from chatops.cli.server import prefect_api_auth

POLL_SECONDS = 0.1
GIVE_UP_SECONDS = 900.0
MARKS = {"COMPLETED": "✓", "FAILED": "✗", "CRASHED": "✗", "CANCELLED": "–"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Unreachable(Exception):
    """The Prefect API did not answer for :data:`GIVE_UP_SECONDS`."""


@dataclass(frozen=True)
class Outcome:
    """How a followed run ended."""

    name: str
    state_type: str
    state_name: str
    message: str | None

    @property
    def completed(self) -> bool:
        return self.state_type == "COMPLETED"


class PrefectApi:
    """The few Prefect REST calls the CLI needs, with the API's auth settings."""

    def __init__(self, api_url: str, timeout: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if auth := prefect_api_auth():
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        elif key := os.environ.get("PREFECT_API_KEY"):
            self.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.api_url}{path}", data=data, method=method, headers=self.headers
        )
        with _opener.open(request, timeout=self.timeout) as response:
            return json.loads(response.read())


def follow(api: PrefectApi, flow_run_id: str, out: TextIO = sys.stdout) -> Outcome:
    """Print each task run of ``flow_run_id`` as it ends; return the run once it is over."""
    seen: dict[str, str] = {}
    lost_since: float | None = None
    while True:
        try:
            run = api.call("GET", f"/flow_runs/{flow_run_id}")
            tasks = api.call(
                "POST",
                "/task_runs/filter",
                {"flow_runs": {"id": {"any_": [flow_run_id]}}, "sort": "EXPECTED_START_TIME_ASC"},
            )
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if lost_since is None:
                lost_since = time.monotonic()
                print(
                    f"  … lost contact with Prefect at {api.api_url} ({_why(exc)}); retrying",
                    file=out,
                    flush=True,
                )
            elif time.monotonic() - lost_since > GIVE_UP_SECONDS:
                raise Unreachable(
                    f"Prefect at {api.api_url} did not answer for {GIVE_UP_SECONDS:.0f} s"
                ) from None
            time.sleep(1.0)
            continue
        if lost_since is not None:
            print("  … Prefect answers again", file=out, flush=True)
            lost_since = None
        for task in tasks:
            state = task.get("state_type")
            if state in MARKS and seen.get(task["id"]) != state:
                seen[task["id"]] = state
                took = f"{task['total_run_time']:.1f} s" if task.get("total_run_time") else ""
                print(
                    f"  {MARKS[state]} {task['name']:<40} {state.lower():<10} {took}",
                    file=out,
                    flush=True,
                )
        state = run.get("state") or {}
        if state.get("type") in FINAL:
            return Outcome(run["name"], state["type"], state.get("name", ""), state.get("message"))
        time.sleep(POLL_SECONDS)


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc) or type(exc).__name__
