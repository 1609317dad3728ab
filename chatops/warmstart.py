"""Warm starts: each flow run forks from a process that has imported everything already.

Prefect's runner starts every run of a served flow in a fresh *spawned* interpreter, which
imports Prefect, fabric, paramiko, PyGithub and the flows again: about a second and a half of a
user's wait, on every deploy. :func:`install` starts a ``multiprocessing`` forkserver that
imports all of that once, and routes the runner's starts through it, so a run's process exists
a few milliseconds after the runner decides to start it.

How it plugs in: the runner's ``DirectSubprocessStarter`` calls the module-level name
``prefect.runner._starter_direct.run_flow_in_subprocess`` (its docstring invites patching the
module). That name is rebound to :func:`run_flow_in_forkserver`, which calls Prefect's own,
unmodified ``run_flow_in_subprocess`` while its ``multiprocessing`` module answers
``get_context()`` with the forkserver context. Everything else (environment, control channel,
signal handling, the pickled payload) stays Prefect's code. The private names are pinned by the
Prefect version in pyproject.toml; if a future Prefect no longer asks ``get_context()``, runs are
spawned as before (slower, still correct) and one warning says so.

The forkserver must stay single-threaded: nothing preloaded may start a thread at import time
(:func:`install` checks). Flow code is frozen until the runner restarts.
"""

import contextlib
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import prefect.flow_engine as _flow_engine
import prefect.runner._starter_direct as _starter_direct

logger = logging.getLogger("chatops.warmstart")

PRELOAD = [
    "prefect",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.task_runners",
    "prefect.client.orchestration",
    "prefect.events.clients",
    "prefect.logging.handlers",
    "prefect._internal.control_listener",
    # imported lazily by every run (found by comparing sys.modules in a run's process):
    "prefect._internal.observers",
    "prefect.utilities.visualization",
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "rich._emoji_codes",
    # last: no flow process outlives the runner (it dies with the forkserver, which dies with it)
    "chatops.forkserver_tie",
]
_upstream = _flow_engine.run_flow_in_subprocess
_context: multiprocessing.context.ForkServerContext | None = None
_swap = threading.Lock()
_warned = False


class _Multiprocessing:
    """The ``multiprocessing`` module, except that ``get_context()`` is the forkserver's."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._context = context

    def get_context(self, method: str | None = None) -> multiprocessing.context.BaseContext:
        return self._context

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def run_flow_in_forkserver(flow: Any, flow_run: Any = None, **kwargs: Any) -> Any:
    """Prefect's ``run_flow_in_subprocess``, forking from the warm forkserver."""
    global _warned
    if _context is None:
        return _upstream(flow, flow_run=flow_run, **kwargs)
    with _swap:
        saved, _flow_engine.multiprocessing = (
            _flow_engine.multiprocessing,
            _Multiprocessing(_context),
        )
        try:
            process = _upstream(flow, flow_run=flow_run, **kwargs)
        finally:
            _flow_engine.multiprocessing = saved
    if not isinstance(process, multiprocessing.context.ForkServerProcess) and not _warned:
        _warned = True
        logger.warning(
            "Prefect did not take the forkserver (%s): runs are spawned, slower",
            type(process).__name__,
        )
    return process


def _nothing() -> None:
    """What the first forked process runs: it only waits for the preload to finish."""


def install(preload: Iterable[str]) -> float:
    """Start the forkserver with ``preload`` (the flow modules) imported; return the seconds
    it took. Call it from the runner's main thread before the runner starts."""
    global _context
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(dict.fromkeys([*PRELOAD, *preload])))
    _context = context
    _starter_direct.run_flow_in_subprocess = run_flow_in_forkserver
    started = time.monotonic()
    first = context.Process(target=_nothing, name="warm-up")
    first.start()
    first.join()
    took = time.monotonic() - started
    pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    threads = None
    with contextlib.suppress(OSError):
        threads = len(os.listdir(f"/proc/{pid}/task")) if pid else None
    if threads not in (None, 1):
        logger.warning(
            "The forkserver has %s threads after importing %s: forking it is "
            "unsafe; a preloaded module starts threads",
            threads,
            preload,
        )
    logger.info("Runs start warm: forkserver %s ready in %.1f s", pid, took)
    return took
