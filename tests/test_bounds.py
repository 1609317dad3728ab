"""The run's bound (flows.bounds): what raises, when, and what it names."""

import contextlib
import time

import pytest
from pydantic import SecretStr

from blocks import App, Environment
from flows import bounds
from flows.bounds import RunTimedOut, bounded_run, run_timeout


def test_a_run_past_its_bound_is_stopped_where_it_waits_and_says_at_which_step() -> None:
    started = time.monotonic()
    with pytest.raises(RunTimedOut) as caught, bounded_run(0.3, lambda: "health check"):
        time.sleep(30)  # a hung step: the alarm ends it
    assert time.monotonic() - started < 2
    assert str(caught.value) == "the run ran past run_timeout (0.3 s) at health check"


def test_a_bound_swallowed_by_code_that_never_fails_is_raised_again() -> None:
    started = time.monotonic()
    with pytest.raises(RunTimedOut), bounded_run(0.2, lambda: "activate"):
        with contextlib.suppress(RunTimedOut):  # e.g. a Slack update that never fails a deploy
            time.sleep(30)
        time.sleep(30)
    assert time.monotonic() - started < 3


def test_a_run_within_its_bound_is_not_touched_and_leaves_no_alarm() -> None:
    with bounded_run(0.3, lambda: "build"):
        assert bounds.seconds_left() is not None
    time.sleep(0.5)  # the alarm was disarmed: nothing raises here
    assert bounds.seconds_left() is None


def test_a_failing_run_disarms_the_alarm_before_switching_back() -> None:
    with pytest.raises(ValueError), bounded_run(0.3, lambda: "activate"):
        try:
            with bounds.disarmed_on_failure():
                raise ValueError("a host failed")
        finally:
            time.sleep(0.5)  # the rollback: the bound must not interrupt it


def test_waits_in_task_threads_end_with_the_run() -> None:
    assert bounds.capped(120) == 120  # no bound outside a run
    with bounded_run(10, lambda: "x"):
        assert 14 < bounds.capped(120) <= 15  # 10 s left, plus the grace


def test_run_timeout_defaults_to_the_build_timeout_plus_half_an_hour() -> None:
    app = App(repository="acme/shop", clone_url="/srv/git/shop", build_timeout=600)
    env = Environment(
        hosts=["web-1"],
        ssh_private_key=SecretStr("k"),
        deploy_path="/srv/shop",
        restart_command="true",
    )
    assert run_timeout(app, env) == 600 + 1800
    assert run_timeout(app, env.model_copy(update={"run_timeout": 90})) == 90
