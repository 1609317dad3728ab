"""Shared pytest set-up: the test bed (real sshd hosts, git, mvn), the GitHub/Slack fakes and a
Prefect server for the tests that need one.

State lives in a throwaway CHATOPS_HOME / PREFECT_HOME, set here before Prefect is imported.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="chatops-tests-"))
os.environ.update(
    CHATOPS_HOME=str(_STATE / "home"),
    PREFECT_HOME=str(_STATE / "prefect"),
    DO_NOT_TRACK="1",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_LEVEL="INFO",
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
)

pytest_plugins = [
    "tests.testbed.fixtures",
    "tests.fakes.github_api",
    "tests.fakes.slack_api",
]


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect API (temporary SQLite database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def chatops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CHATOPS_HOME (mirrors, artifact cache, work trees) for one test."""
    home = tmp_path / "chatops-home"
    monkeypatch.setenv("CHATOPS_HOME", str(home))
    return home
