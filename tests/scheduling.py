"""pytest plugin (loaded by tests/conftest.py when pytest-xdist is installed): how many workers
``-n auto`` starts (scripts/test.sh passes it), and how the test modules are shared out among them.

Each module goes to one worker whole, so its module fixtures start once. Every module with an
end-to-end test goes to the same worker, one after another: those tests start ``chatops up``,
test hosts and builds, and their timing bounds hold on this 2-core machine only when they do not
run two at a time. The exceptions (``WAITING``) are one scope of their own, run beside the
others: their tests spend most of their time waiting, not on the CPU (for Prefect to find a run
silent, two missed heartbeats; for a restart held on a host while a deploy is aborted or another
waits its turn). The other modules run in whichever worker is free meanwhile.

Tried and dropped, one run each on one evening (this split at b8daf34: 25 min 48 s): three
workers, each module to the first free one, took 29 min 38 s at 17f3d32 with on average 1.94 of
the 2 cores busy, and broke a bound (a Slack answer within 0.6 s); ``chatops up``'s own tests
moved into the scope that runs beside the end-to-end ones took 29 min 30 s at 4bdca12 and broke
two (a Slack answer within 0.6 s; the server recording 42 hosts' task runs within 60 s).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

END_TO_END = "end-to-end"
"""The scope every module with an end-to-end test shares."""
WAITING = frozenset(
    {
        "tests/test_abort_e2e.py",
        "tests/test_crash_e2e.py",
        "tests/test_dead_runs_e2e.py",
        "tests/test_waiting_e2e.py",
    }
)
"""End-to-end modules that run beside the others: a scope of their own."""
LONGEST_FIRST = (f"{END_TO_END}, waiting", END_TO_END)
"""The two scopes that take longest, started first, each by its own worker."""
WORKERS = 2
"""Workers for a run with end-to-end tests: one per core of the reference machine."""
WORKERS_WITHOUT_END_TO_END = 3
"""Workers for a run without: its tests often wait (on a bound of a second, a slow fake), and a
third worker uses that time."""


def selects_end_to_end(config: pytest.Config) -> bool:
    """Whether ``-m`` (if given) lets a test marked ``e2e`` run."""
    markexpr = config.option.markexpr
    return not markexpr or Expression.compile(markexpr).evaluate(lambda mark: mark == "e2e")


@functools.cache
def has_end_to_end_tests(module: str) -> bool:
    """Whether the test module at ``module`` (a path from the root) marks any test e2e."""
    path = Path(__file__).parents[1] / module
    return path.is_file() and "pytest.mark.e2e" in path.read_text()


class EndToEndScopes(LoadScopeScheduling):
    """Load-scope scheduling with modules as scopes, the end-to-end ones merged into two."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        if module in WAITING:
            return f"{END_TO_END}, waiting"
        return END_TO_END if has_end_to_end_tests(module) else module

    def _assign_work_unit(self, node: WorkerController) -> None:
        # xdist hands out scopes in the order of its queue (the most tests first), one to each
        # worker before any gets a second: the two long scopes go first, so to two workers.
        for scope in LONGEST_FIRST:
            if scope in self.workqueue:
                self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> EndToEndScopes:
    return EndToEndScopes(config, log)  # type: ignore[arg-type]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return WORKERS if selects_end_to_end(config) else WORKERS_WITHOUT_END_TO_END
