"""Follow a flow run from the terminal: each task run as it ends, then the run's final state.

It asks the gateway (``GET /cli/runs/{id}``, with the person's own token), which reads Prefect
for it: the CLI holds no credential of the Prefect API, and starts in a fraction of a second.
When the answer stops coming (a Prefect or gateway restart), it says so once, keeps asking, and
carries on where it was; after ``give_up_after`` seconds (default :data:`GIVE_UP_SECONDS`,
``--give-up-after`` or ``CHATOPS_GIVE_UP_AFTER``) without an answer it stops following with
:class:`Unreachable`, which names the run's link and how to follow it again. A run that is
unfinished while the gateway answers is followed as long as it lasts.

While the run waits for its environment's slot, the gateway's answer says who holds it
(``waiting``): the CLI prints that once, and again when the holder changes. Once the deploy
knows its commit, the answer says what it changes against what runs there now (``change``:
``1 commit added (compare URL)``, or ``first deploy here``): the CLI prints that once.

Following costs Prefect little: after the first look, each look asks only for the task runs that
ended since the last one (the gateway's ``cursor``, passed back as ``since``), and the looks
come every :data:`POLL_SECONDS` while lines come, slowing down to :data:`POLL_MAX_SECONDS` while
none do. Once the run is over, the first look that finds its own account of its task runs
(``complete``: a deploy or rollback writes it as its last act) shows every line left and ends
the follow. Without one (a crashed run), one last full look (after :data:`SETTLE_SECONDS`, for
task runs Prefect records late, repeated after a success while one of them is not over yet,
slowing down to :data:`POLL_MAX_SECONDS`, up to :data:`SETTLE_LIMIT_SECONDS`) shows any line the
looks by cursor missed: the terminal shows every task of the run, however many hosts.
"""

import contextlib
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TextIO

from chatops.cli.server import Gateway, GatewayError, TokenRefused
from model.errors import DeployError

POLL_SECONDS = 1.0
"""The pause between looks while task runs keep ending. Each look costs the Prefect server two
small reads; at 1 s a 42-host deploy followed cost it 8 % (means) to 12 % (medians) more CPU
than one nobody follows, at 0.5 s 16.5 % (docs/operations.md)."""
POLL_MAX_SECONDS = 2.0
"""The longest pause between looks: it grows by :data:`POLL_GROWTH` per look that found nothing
(a build, a wait for the slot); the next task that ends brings it back to :data:`POLL_SECONDS`."""
POLL_GROWTH = 1.5
SETTLE_SECONDS = 0.5
"""After the run's end, the pause before the last full look (for late-recorded task runs)."""
SETTLE_LIMIT_SECONDS = 15.0
"""How long after the run's end the full looks go on while one of its task runs is not over yet:
a busy server records the last task runs' ends a few seconds after the run's (a 42-host wave)."""
RETRY_SECONDS = 1.0
GIVE_UP_SECONDS = 120.0
"""How long the CLI follows a run without any answer from the gateway (or Prefect behind it)."""
GIVE_UP_ENV = "CHATOPS_GIVE_UP_AFTER"
MARKS = {"COMPLETED": "✓", "FAILED": "✗", "CRASHED": "✗", "CANCELLED": "–"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Clock(Protocol):
    """What a follow reads the time from and pauses with: :data:`REAL_TIME`, or in tests one
    whose ``sleep`` only moves its ``monotonic`` on, so the pacing is checked without waiting."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


REAL_TIME: Clock = time  # the module has both functions


class Unreachable(DeployError):
    """No answer about the run for the follow's bound: the message says what to do next."""


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
    """No answer about the run this time (the gateway or Prefect is away); ask again.

    ``who`` says which one did not answer, as the messages name it.
    """

    def __init__(self, who: str, why: str) -> None:
        super().__init__(why)
        self.who = who


class GatewayRuns:
    """A run as the gateway reports it: name, state, and the task runs that have finished."""

    def __init__(self, gateway: Gateway, timeout: float = 15.0) -> None:
        self.gateway = gateway
        self.timeout = timeout

    @property
    def gateway_name(self) -> str:
        return f"the gateway at {self.gateway.url}"

    @property
    def prefect_name(self) -> str:
        return f"Prefect through the gateway at {self.gateway.url}"

    def run(
        self, flow_run_id: str, within: float | None = None, since: str | None = None
    ) -> dict[str, Any]:
        """The run as the gateway reports it; waits at most ``within`` seconds (if given); with
        ``since`` (the ``cursor`` of an earlier answer), only the task runs that ended since."""
        timeout = self.timeout if within is None else max(0.1, min(self.timeout, within))
        path = f"/cli/runs/{flow_run_id}"
        if since:
            path += "?" + urllib.parse.urlencode({"since": since})
        try:
            status, answer = self.gateway.ask("GET", path, timeout=timeout)
        except TokenRefused:
            raise
        except GatewayError as exc:  # "the gateway at URL did not answer (why)": keep the why
            why = str(exc).removeprefix(f"{self.gateway_name} did not answer ")
            raise Lost(self.gateway_name, why.removeprefix("(").removesuffix(")")) from None
        if status == 404:
            raise GatewayError(f"the gateway knows no run {flow_run_id}")
        if status == 503:
            raise Lost(self.prefect_name, str(answer.get("error") or "HTTP 503"))
        if status != 200:
            raise Lost(self.gateway_name, str(answer.get("error") or f"HTTP {status}"))
        return answer


def give_up_seconds(given: float | None = None) -> float:
    """The follow's bound: ``given`` (``--give-up-after``), else ``CHATOPS_GIVE_UP_AFTER``,
    else :data:`GIVE_UP_SECONDS`."""
    if given is not None:
        return given
    try:
        return float(os.environ.get(GIVE_UP_ENV) or GIVE_UP_SECONDS)
    except ValueError:
        raise GatewayError(f"{GIVE_UP_ENV} must be a number of seconds") from None


def follow(
    runs: GatewayRuns,
    flow_run_id: str,
    out: TextIO | None = None,
    *,
    give_up_after: float = GIVE_UP_SECONDS,
    run_url: str | None = None,
    clock: Clock = REAL_TIME,
) -> Outcome:
    """Print each task run of ``flow_run_id`` as it ends; return the run once it is over.

    Raises :class:`Unreachable` once ``give_up_after`` seconds have passed since the last
    answer (or the start), a look under way included. The pauses and the bound are measured on
    ``clock``.
    """
    out = out or sys.stdout
    seen: dict[str, str] = {}
    holder: str | None = None
    answered = clock.monotonic()
    lost_who: str | None = None
    link = run_url
    cursor: str | None = None
    pause = POLL_SECONDS
    settling = False
    settle_until: float | None = None
    change_shown = False
    while True:
        try:
            run = runs.run(
                flow_run_id,
                within=answered + give_up_after - clock.monotonic(),
                since=None if settling else cursor,
            )
        except Lost as exc:
            if lost_who is None:
                lost_who = exc.who
                say(
                    out,
                    f"  … lost contact with {exc.who} ({exc}); retrying (giving up after "
                    f"{give_up_after:.0f} s without an answer)",
                )
            left = answered + give_up_after - clock.monotonic()
            if left <= 0:
                raise Unreachable(gave_up(exc.who, give_up_after, flow_run_id, link)) from None
            clock.sleep(min(RETRY_SECONDS, left))
            continue
        answered = clock.monotonic()
        if lost_who is not None:
            again = "Prefect" if lost_who.startswith("Prefect") else "the gateway"
            say(out, f"  … {again} answers again")
            lost_who = None
        link = run.get("url") or link
        cursor = run.get("cursor") or cursor
        holder = show_waiting(run.get("waiting"), holder, out)
        news = show_tasks(run.get("task_runs", []), seen, out)
        if run.get("change") and not change_shown:  # after the lines of the steps before it
            say(out, f"  ↔ changes: {run['change']}")
            change_shown = True
        state = run.get("state") or {}
        if state.get("type") in FINAL:
            settle_until = settle_until or clock.monotonic() + SETTLE_LIMIT_SECONDS
            over = (
                state["type"] != "COMPLETED"  # a crashed run's tasks may never be over
                or all(t.get("state_type") in FINAL for t in run.get("task_runs", []))
                or clock.monotonic() > settle_until
            )
            # the last look was a full one, or the run's own account of every task run
            if (run.get("complete") or settling or not cursor) and over:
                return Outcome(
                    run["name"], state["type"], state.get("name", ""), state.get("message")
                )
            # each full look reads every task run: the repeats slow down as the looks by cursor do
            pause = min(POLL_MAX_SECONDS, pause * POLL_GROWTH) if settling else SETTLE_SECONDS
            settling = True
        else:
            pause = POLL_SECONDS if news else min(POLL_MAX_SECONDS, pause * POLL_GROWTH)
        clock.sleep(pause)


def show_tasks(tasks: list[dict[str, Any]], seen: dict[str, str], out: TextIO) -> int:
    """Print each finished task run not shown yet in that state; how many were printed."""
    shown = 0
    for task in tasks:
        state = task.get("state_type")
        if state in MARKS and seen.get(task["id"]) != state:
            seen[task["id"]] = state
            took = f"{task['total_run_time']:.1f} s" if task.get("total_run_time") else ""
            say(out, f"  {MARKS[state]} {task['name']:<40} {state.lower():<10} {took}")
            shown += 1
    return shown


def say(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)


def gave_up(who: str, seconds: float, flow_run_id: str, link: str | None) -> str:
    """What the CLI says when it stops following: the run may well go on without it."""
    return (
        f"no answer from {who} for {seconds:.0f} s; the run may still be going: "
        f"{link or flow_run_id}; follow it again with `chatops follow {flow_run_id}` "
        "or check the UI"
    )


def show_waiting(waiting: dict[str, Any] | None, shown: str | None, out: TextIO) -> str | None:
    """Print who holds the slot the run waits for, once per holder; the holder now shown."""
    if not waiting:
        return None
    if waiting.get("run_id") == shown:
        return shown
    say(out, f"  ⏳ {waiting_line(waiting)}")
    return waiting.get("run_id")


def waiting_line(waiting: dict[str, Any]) -> str:
    """``waiting for shop@slow → staging (URL): deploy of shop@slow by alice since 10:42:03
    UTC; abort it with `chatops abort shop in staging```."""
    since = waiting.get("since") or ""
    with contextlib.suppress(ValueError):
        since = datetime.fromisoformat(since).strftime("%H:%M:%S %Z").strip()
    link = f" ({waiting['run_url']})" if waiting.get("run_url") else ""
    app, environment = waiting.get("app"), waiting.get("environment")
    return (
        f"waiting for {waiting.get('title')}{link}: {waiting.get('kind', 'deploy')} of "
        f"{app}@{waiting.get('ref')} by {waiting.get('requested_by') or 'someone'} since "
        f"{since}; abort it with `chatops abort {app} in {environment}`"
    )
