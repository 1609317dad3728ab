"""``chatops follow`` and the follow of ``deploy``: the bound on silence, and the waiting line.

The CLI talks real HTTP here: to a port nothing listens on (the gateway is gone), or to a
small HTTP server on 127.0.0.1 that answers as the gateway's ``/cli/runs/{id}`` does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pytest

from chatops import cli
from chatops.cli.follow import (
    GIVE_UP_SECONDS,
    POLL_MAX_SECONDS,
    POLL_SECONDS,
    SETTLE_SECONDS,
    GatewayRuns,
    Unreachable,
    follow,
)
from chatops.cli.server import Gateway
from tests.up_server import free_port

RUN_ID = str(uuid4())
HOLDER = {
    "run_id": "7c0ffee0-0000-4000-8000-000000000001",
    "title": "shop@slow → staging",
    "kind": "deploy",
    "app": "shop",
    "environment": "staging",
    "ref": "slow",
    "requested_by": "alice",
    "since": "2026-12-07T10:42:03+00:00",
    "run_url": "http://127.0.0.1:4200/runs/flow-run/7c0ffee0",
}


class Answers:
    """What the pretend gateway answers, one after the other (the last one for ever)."""

    def __init__(self, *answers: tuple[int, dict]) -> None:
        self.answers = list(answers)
        self.asked = 0
        self.paths: list[str] = []

    def next(self) -> tuple[int, dict]:
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def gateway() -> Iterator[tuple[str, Answers]]:
    answers = Answers((200, {}))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            answers.paths.append(self.path)
            status, body = answers.next()
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a short poll interval: shutdown() waits for the loop to look
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers
    server.shutdown()
    server.server_close()


class PretendClock:
    """A follow's clock whose pauses take no time: ``sleep`` records the pause and moves
    ``monotonic`` on by it, so a test sees the pacing (and the bound) without waiting it out."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def run(state: str | None, waiting: dict | None = None, tasks: list | None = None) -> dict:
    return {
        "id": RUN_ID,
        "name": "shop@v2 → staging",
        "url": f"http://127.0.0.1:4200/runs/flow-run/{RUN_ID}",
        "state": {"type": state, "name": (state or "").title(), "message": None},
        "waiting": waiting,
        "task_runs": tasks or [],
    }


def test_the_default_bound_is_two_minutes() -> None:
    assert GIVE_UP_SECONDS == 120


def test_a_gone_gateway_ends_the_follow_after_the_bound_naming_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("CHATOPS_GATEWAY_URL", gone)
    monkeypatch.setenv("CHATOPS_TOKEN", "t0ken")
    started = time.monotonic()
    code = cli.main(["follow", RUN_ID, "--give-up-after", "1"])
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == cli.GAVE_UP == 4
    assert 1 <= took < 3, took
    assert out.count("lost contact with the gateway") == 1, out
    assert "retrying (giving up after 1 s without an answer)" in out
    assert err == (
        f"chatops: no answer from the gateway at {gone} for 1 s; the run may still be going: "
        f"{RUN_ID}; follow it again with `chatops follow {RUN_ID}` or check the UI\n"
    )


def test_the_bound_can_be_set_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATOPS_GATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CHATOPS_TOKEN", "t0ken")
    monkeypatch.setenv("CHATOPS_GIVE_UP_AFTER", "1")
    started = time.monotonic()
    assert cli.main(["follow", RUN_ID]) == 4
    assert time.monotonic() - started < 3
    assert "for 1 s" in capsys.readouterr().err


def test_silence_after_answers_gives_up_with_the_run_link_the_gateway_gave(
    gateway: tuple[str, Answers], capsys: pytest.CaptureFixture[str]
) -> None:
    url, answers = gateway
    answers.answers = [(200, run("RUNNING")), (503, {"error": "Prefect did not answer (x)"})]
    with pytest.raises(Unreachable) as gave_up:
        follow(GatewayRuns(Gateway(url, "t")), RUN_ID, give_up_after=1, clock=PretendClock())
    assert str(gave_up.value).startswith(
        f"no answer from Prefect through the gateway at {url} for 1 s; the run may still be "
        f"going: http://127.0.0.1:4200/runs/flow-run/{RUN_ID};"
    )


def test_a_long_run_is_followed_past_the_bound_while_the_gateway_answers(
    gateway: tuple[str, Answers], capsys: pytest.CaptureFixture[str]
) -> None:
    url, answers = gateway
    running = [(200, run("RUNNING"))] * 4  # pauses growing to 2 s: beyond the bound
    answers.answers = [*running, (200, run("COMPLETED"))]
    clock = PretendClock()
    outcome = follow(GatewayRuns(Gateway(url, "t")), RUN_ID, give_up_after=1, clock=clock)
    assert outcome.completed and answers.asked == 5
    assert max(clock.pauses) > 1  # a pause longer than the bound did not end the follow


def test_the_waiting_line_is_shown_once_per_holder_and_names_the_abort(
    gateway: tuple[str, Answers], capsys: pytest.CaptureFixture[str]
) -> None:
    url, answers = gateway
    other = {**HOLDER, "run_id": "another", "title": "shop@hotfix → staging", "ref": "hotfix"}
    answers.answers = [
        (200, run("RUNNING", HOLDER)),
        (200, run("RUNNING", HOLDER)),
        (200, run("RUNNING", other)),
        (200, run("RUNNING", None)),
        (200, run("COMPLETED")),
    ]
    follow(GatewayRuns(Gateway(url, "t")), RUN_ID, clock=PretendClock())
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  ⏳ waiting for shop@slow → staging (http://127.0.0.1:4200/runs/flow-run/7c0ffee0): "
        "deploy of shop@slow by alice since 10:42:03 UTC; abort it with "
        "`chatops abort shop in staging`",
        "  ⏳ waiting for shop@hotfix → staging (http://127.0.0.1:4200/runs/flow-run/7c0ffee0): "
        "deploy of shop@hotfix by alice since 10:42:03 UTC; abort it with "
        "`chatops abort shop in staging`",
    ]


def task(n: int, state: str = "COMPLETED") -> dict:
    return {"id": f"t{n}", "name": f"step-{n}", "state_type": state, "total_run_time": 0.5}


def test_each_look_asks_only_for_what_ended_since_the_last_and_the_end_shows_every_line(
    gateway: tuple[str, Answers], capsys: pytest.CaptureFixture[str]
) -> None:
    url, answers = gateway
    answers.answers = [
        (200, {**run("RUNNING", tasks=[task(1), task(2)]), "cursor": "2026-12-07T10:00:02+00:00"}),
        (200, {**run("RUNNING", tasks=[task(2), task(3)]), "cursor": "2026-12-07T10:00:03+00:00"}),
        (200, {**run("RUNNING"), "cursor": "2026-12-07T10:00:03+00:00"}),
        (200, {**run("COMPLETED", tasks=[task(5)]), "cursor": "2026-12-07T10:00:05+00:00"}),
        # the last, full look: step-4 was recorded late, after the looks by cursor passed it
        (200, {**run("COMPLETED", tasks=[task(n) for n in range(1, 6)]), "cursor": "x"}),
    ]
    outcome = follow(GatewayRuns(Gateway(url, "t")), RUN_ID, clock=PretendClock())
    assert outcome.completed
    base = f"/cli/runs/{RUN_ID}"
    assert answers.paths == [
        base,
        f"{base}?since=2026-12-07T10%3A00%3A02%2B00%3A00",
        f"{base}?since=2026-12-07T10%3A00%3A03%2B00%3A00",
        f"{base}?since=2026-12-07T10%3A00%3A03%2B00%3A00",
        base,  # the run is over: one full look
    ]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == [
        "step-1",
        "step-2",
        "step-3",
        "step-5",
        "step-4",
    ]  # every task once, the late one too


def test_a_task_whose_end_the_server_records_after_the_runs_is_waited_for(
    gateway: tuple[str, Answers], capsys: pytest.CaptureFixture[str]
) -> None:
    """The run is over but the full look still shows a task running (a busy server records the
    end of a wave of task runs late): the CLI looks again until that task's line can be shown."""
    url, answers = gateway
    answers.answers = [
        (200, {**run("RUNNING", tasks=[task(1)]), "cursor": "2026-12-07T10:00:01+00:00"}),
        (200, {**run("COMPLETED"), "cursor": "2026-12-07T10:00:01+00:00"}),
        (200, {**run("COMPLETED", tasks=[task(1), task(2, "RUNNING")]), "cursor": "x"}),
        (200, {**run("COMPLETED", tasks=[task(1), task(2)]), "cursor": "x"}),
    ]
    assert follow(GatewayRuns(Gateway(url, "t")), RUN_ID, clock=PretendClock()).completed
    assert answers.asked == 4
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["step-1", "step-2"]


def test_a_crashed_runs_task_left_running_is_not_waited_for(
    gateway: tuple[str, Answers], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that crashed leaves its task running for good: the CLI ends after its full look."""
    url, answers = gateway
    crashed = run("CRASHED", tasks=[task(1), task(2, "RUNNING")])
    answers.answers = [(200, {**crashed, "cursor": "x"})] * 3
    clock = PretendClock()
    assert not follow(GatewayRuns(Gateway(url, "t")), RUN_ID, clock=clock).completed
    assert answers.asked == 2  # the look by cursor, then the full one
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["step-1"]


def test_looks_slow_down_while_nothing_ends_and_speed_up_when_something_does(
    gateway: tuple[str, Answers],
) -> None:
    url, answers = gateway
    quiet = [(200, {**run("RUNNING"), "cursor": "2026-12-07T10:00:00+00:00"})] * 6
    busy = (200, {**run("RUNNING", tasks=[task(1)]), "cursor": "2026-12-07T10:00:01+00:00"})
    done = (200, {**run("COMPLETED"), "cursor": "2026-12-07T10:00:01+00:00"})
    answers.answers = [*quiet, busy, done, done]
    clock = PretendClock()
    follow(GatewayRuns(Gateway(url, "t")), RUN_ID, clock=clock)
    assert answers.asked == 9  # eight looks by cursor and the last, full one
    growing = clock.pauses[:6]  # after each of the six quiet looks
    assert growing == sorted(growing) and growing[0] < growing[1]  # nothing ends: slower
    assert growing[0] > POLL_SECONDS
    assert growing[-1] == POLL_MAX_SECONDS  # grown to its bound, and no further
    assert clock.pauses[6] == POLL_SECONDS  # a task ended: quick again
    assert clock.pauses[7] == SETTLE_SECONDS  # the run is over: the pause before the full look
    assert len(clock.pauses) == 8


def test_an_ended_run_s_own_account_of_its_task_runs_ends_the_follow_at_once(
    gateway: tuple[str, Answers], capsys: pytest.CaptureFixture[str]
) -> None:
    """The server has recorded one of three task runs; the run's account has all three."""
    url, answers = gateway
    cursor = "2026-12-07T10:00:00+00:00"
    ended = {**run("COMPLETED", tasks=[task(1), task(2), task(3)]), "complete": True}
    answers.answers = [(200, {**run("RUNNING", tasks=[task(1)]), "cursor": cursor}), (200, ended)]
    clock = PretendClock()
    assert follow(GatewayRuns(Gateway(url, "t")), RUN_ID, clock=clock).completed
    assert answers.asked == 2  # no full look after it, no pause for late records
    assert clock.pauses == [POLL_SECONDS]
    shown = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert shown == ["step-1", "step-2", "step-3"]
