"""Follow a flow run from the terminal: each task run as it ends, then the run's final state.

It asks the gateway (``GET /cli/runs/{id}``, with the person's own token), which reads Prefect
for it: the CLI holds no credential of the Prefect API, and starts in a fraction of a second.
When the answer stops coming (a Prefect or gateway restart), it says so once, keeps asking, and
carries on where it was.
"""

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from blocks.errors import DeployError
from chatops.cli.server import Gateway, GatewayError, TokenRefused

POLL_SECONDS = 0.1
GIVE_UP_SECONDS = 900.0
MARKS = {"COMPLETED": "✓", "FAILED": "✗", "CRASHED": "✗", "CANCELLED": "–"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Unreachable(DeployError):
    """No word about the run for :data:`GIVE_UP_SECONDS`."""


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


class Lost(DeployError):
    """No answer about the run this time (the gateway or Prefect is away); ask again."""


class GatewayRuns:
    """A run as the gateway reports it: name, state, and the task runs that have finished."""

    def __init__(self, gateway: Gateway, timeout: float = 15.0) -> None:
        self.gateway = gateway
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"through the gateway at {self.gateway.url}"

    def run(self, flow_run_id: str) -> dict[str, Any]:
        try:
            status, answer = self.gateway.ask(
                "GET", f"/cli/runs/{flow_run_id}", timeout=self.timeout
            )
        except TokenRefused:
            raise
        except GatewayError as exc:
            raise Lost(str(exc)) from None
        if status == 404:
            raise GatewayError(f"the gateway knows no run {flow_run_id}")
        if status != 200:
            raise Lost(str(answer.get("error") or f"HTTP {status}"))
        return answer


def follow(runs: GatewayRuns, flow_run_id: str, out: TextIO = sys.stdout) -> Outcome:
    """Print each task run of ``flow_run_id`` as it ends; return the run once it is over."""
    seen: dict[str, str] = {}
    lost_since: float | None = None
    while True:
        try:
            run = runs.run(flow_run_id)
        except Lost as exc:
            if lost_since is None:
                lost_since = time.monotonic()
                print(
                    f"  … lost contact with Prefect {runs.where} ({exc}); retrying",
                    file=out,
                    flush=True,
                )
            elif time.monotonic() - lost_since > GIVE_UP_SECONDS:
                raise Unreachable(
                    f"Prefect did not answer {runs.where} for {GIVE_UP_SECONDS:.0f} s"
                ) from None
            time.sleep(1.0)
            continue
        if lost_since is not None:
            print("  … Prefect answers again", file=out, flush=True)
            lost_since = None
        for task in run.get("task_runs", []):
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
