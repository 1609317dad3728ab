"""The bound of a whole run: ``run_timeout``, counted from when a run holds its environment's slot.

A hung step (a restart waiting on a host, a health check, a build) must not hold the slot
forever. Python cannot raise an exception into another thread, but the flow's body runs in the
main thread of its process, and a signal handler runs there: when the bound passes, a
``SIGALRM`` raises :class:`RunTimedOut` wherever the body is waiting (on a task's result, a
subprocess, a lock). From there everything a failure does happens: the rolling switch's
transaction switches back every host it switched, the slot is released, and GitHub, Slack and
the run say ``the run ran past run_timeout (N s) at <step>``.

Work running in the task threads is bounded too, so nothing goes on after the run: a health
check or a restart never runs past the run's bound plus :data:`GRACE_SECONDS` (a restart is
killed on its host then, and its host switched back by its own task), and the batch waits for
them before the slot is released (:func:`flows.steps.switch_batch`). Once the run is failing
(for any reason), the alarm is disarmed, so it never interrupts switching hosts back
(:func:`disarmed_on_failure`), and once every host runs the release it is disarmed too: a
success is never turned into a failure.
"""

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from blocks import App, Environment
from model.errors import DeployError

DEFAULT_EXTRA_SECONDS = 30 * 60
"""Without ``run_timeout``: the app's ``build_timeout`` plus this."""
REPEAT_SECONDS = 1.0
"""When the bound's exception was swallowed, it is raised again this much later."""
GRACE_SECONDS = 5.0
"""How long a health check may outlast the run's bound, so the bound (not the check) says why."""


class RunTimedOut(DeployError, RuntimeError):
    """The run went on past its environment's ``run_timeout``."""


def run_timeout(app: App, env: Environment) -> float:
    """The environment's ``run_timeout``, or the app's ``build_timeout`` plus 30 minutes."""
    return (
        env.run_timeout
        if env.run_timeout is not None
        else app.build_timeout + (DEFAULT_EXTRA_SECONDS)
    )


_deadline: float | None = None
"""When the current run's bound passes (``time.monotonic()``); None outside a bounded run."""


def seconds_left() -> float | None:
    """Seconds until the current run's bound; None when the run has none."""
    return None if _deadline is None else max(0.0, _deadline - time.monotonic())


def capped(seconds: float) -> float:
    """``seconds``, but no longer than the run's bound (plus :data:`GRACE_SECONDS`)."""
    left = seconds_left()
    return seconds if left is None else min(seconds, left + GRACE_SECONDS)


def disarm() -> None:
    """Stop the alarm: every host is switched and healthy, and the run is reporting success,
    which nothing may turn into a failure any more."""
    if threading.current_thread() is threading.main_thread():
        signal.setitimer(signal.ITIMER_REAL, 0)


@contextmanager
def disarmed_on_failure() -> Iterator[None]:
    """When the block fails, stop the alarm before anything outside it (a rollback) runs."""
    try:
        yield
    except BaseException:
        disarm()
        raise


@contextmanager
def bounded_run(seconds: float, where: Callable[[], str]) -> Iterator[None]:
    """Fail the block with :class:`RunTimedOut` when it runs past ``seconds``.

    ``where`` names the step the run is at when the bound passes. Only in the main thread (where
    signals are delivered); elsewhere the block runs unbounded, and health checks still stop.
    """
    global _deadline
    in_main = threading.current_thread() is threading.main_thread()

    def expired(signum: int, frame: FrameType | None) -> None:
        # Again a second later, until disarmed: code that swallows errors (a Slack update
        # that "never fails a deploy") must not swallow the bound.
        signal.setitimer(signal.ITIMER_REAL, REPEAT_SECONDS)
        raise RunTimedOut(f"the run ran past run_timeout ({seconds:g} s) at {where()}")

    previous = signal.signal(signal.SIGALRM, expired) if in_main else None
    _deadline = time.monotonic() + seconds
    if in_main:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        disarm()
        _deadline = None
        if in_main:
            signal.signal(signal.SIGALRM, previous)
