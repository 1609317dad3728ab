"""pytest plugin (loaded by tests/conftest.py when pytest-xdist is installed): how the test
modules are shared out among the workers that scripts/test.sh starts.

Each module goes to one worker whole, so its module fixtures start once. Every module with an
end-to-end test goes to the same worker, one after another: those tests start ``chatops up``,
test hosts and builds, and their timing bounds hold on this 2-core machine only when they do not
run two at a time. The other modules run in the other worker meanwhile.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

END_TO_END = "end-to-end"
"""The scope every module with an end-to-end test shares."""


@functools.cache
def has_end_to_end_tests(module: str) -> bool:
    """Whether the test module at ``module`` (a path from the root) marks any test e2e."""
    path = Path(__file__).parents[1] / module
    return path.is_file() and "pytest.mark.e2e" in path.read_text()


class EndToEndInOneWorker(LoadScopeScheduling):
    """Load-scope scheduling with modules as scopes, the end-to-end ones merged into one."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return END_TO_END if has_end_to_end_tests(module) else module


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> EndToEndInOneWorker:
    return EndToEndInOneWorker(config, log)  # type: ignore[arg-type]
