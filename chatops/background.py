"""Work that runs beside the requests: the gateway's loops, and answers that come late.

Slack wants an answer within 3 s; reading Prefect can take longer when its database is busy.
:meth:`Background.within` waits for a piece of work only up to a budget and hands its result to
a callback if it comes later; the work itself is never cancelled by the budget. :class:`Loop`
runs one endless coroutine (the catalog's refresh, the intake's dispatcher) until stopped.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CANCEL_AGAIN_SECONDS = 0.5
"""How long :meth:`Loop.stop` waits for cancelled work to end before cancelling it again."""
logger = logging.getLogger("chatops.background")


class Background:
    """Work that may outlive the request that began it, kept referenced until it is done.

    ``within`` waits for a coroutine only up to a budget::

        reply = await background.within(start_and_describe(), 2.0, then=post_to_response_url)
        if reply is None:   # still running: it carries on and ``then`` gets its result later
            reply = "Starting…"

    The work itself is never cancelled by the budget; a failure after the budget is logged.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T], name: str = "background") -> asyncio.Task[T]:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def within(
        self, work: Coroutine[Any, Any, T], seconds: float, then: Callable[[T], Awaitable[None]]
    ) -> T | None:
        """``work``'s result if it is done within ``seconds``; else None and ``then(result)``
        once it is."""
        task = self.spawn(work, "budgeted")
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if done:
            return task.result()
        self.spawn(self._deliver(task, then), "deliver-late")
        return None

    async def drain(self, seconds: float) -> None:
        """Give unfinished work up to ``seconds`` (at shutdown), then cancel what is left."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=seconds)
        for task in late:
            task.cancel()
        if late:
            logger.warning("Stopped with %d background jobs unfinished", len(late))

    async def _deliver(self, task: asyncio.Task[T], then: Callable[[T], Awaitable[None]]) -> None:
        await then(await task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Background job %s failed", task.get_name(), exc_info=task.exception())


class Loop:
    """One endless coroutine, run in the background from :meth:`start` until :meth:`stop`."""

    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._work, self._name = work, name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._work(), name=self._name)

    async def stop(self) -> None:
        """Cancel the work and wait until it has ended; cancel it again while it goes on: on
        Python 3.11 ``asyncio.wait_for`` swallows a cancellation that comes just as what it
        waits for finishes, and the work would go round once more, or forever."""
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_AGAIN_SECONDS)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                task.result()
