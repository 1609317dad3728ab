"""pytest plugin (loaded by tests/conftest.py when pytest-xdist is installed): how many workers
``-n auto`` starts (scripts/test.sh passes it), and in which order the test modules are handed
out.

Each module goes to one worker whole, so its module fixtures (a shared ``chatops up``, a Prefect
server on PostgreSQL) start once. The longest modules go first (:data:`LONGEST_FIRST`), each to
the first free worker, and the short ones fill in behind them: the run ends about when the
longest stream of work does, not when one worker has worked through every end-to-end test
alone. Much of the suite's time is waiting (for a Tomcat to answer, a heartbeat to be missed, a
restart held on a host, a bound of a second, a slow fake), so three workers share the 2 cores of
the reference machine.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

LONGEST_FIRST = (
    "tests/test_crash_e2e.py",
    "tests/test_cli_e2e.py",
    "tests/test_deploy_e2e.py",
    "tests/test_dead_runs_e2e.py",
    "tests/test_bench_smoke.py",
    "tests/test_abort_e2e.py",
    "tests/test_many_hosts_e2e.py",
    "tests/test_waiting_e2e.py",
    "tests/test_up.py",
    "tests/test_failures_e2e.py",
    "tests/test_scale_out.py",
    "tests/test_api_auth.py",
)
"""The modules that took longer than a minute in a full run (longest first)."""
WORKERS = 3


class LongestFirst(LoadScopeScheduling):
    """Load-scope scheduling with modules as scopes, the longest handed out first."""

    def _split_scope(self, nodeid: str) -> str:
        return nodeid.split("::", 1)[0]

    def _assign_work_unit(self, node: WorkerController) -> None:
        # xdist hands out scopes in the order of its queue (the most tests first).
        for scope in reversed(LONGEST_FIRST):
            if scope in self.workqueue:
                self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LongestFirst:
    return LongestFirst(config, log)  # type: ignore[arg-type]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return WORKERS
