"""Shared pytest set-up: the test bed (real sshd hosts, git, mvn), the GitHub/Slack fakes and a
Prefect server for the tests that need one.

State lives in a throwaway CHATOPS_HOME / PREFECT_HOME, set here before Prefect is imported.
"""

import contextlib
import functools
import importlib.util
import os
import secrets
import shutil
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="chatops-tests-"))
API_AUTH = secrets.token_hex(32)
"""The test Prefect server wants this credential from every client, as ``chatops up``'s does."""
os.environ.update(
    PREFECT_SERVER_API_AUTH_STRING=API_AUTH,
    PREFECT_API_AUTH_STRING=API_AUTH,
    CHATOPS_HOME=str(_STATE / "home"),
    PREFECT_HOME=str(_STATE / "prefect"),
    DO_NOT_TRACK="1",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_LEVEL="INFO",
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
    # The test server stores events every 0.5 s, not every 5 s: tests that read an event back
    # (a heartbeat, a run's state change) wait for that.
    PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL="0.5",
    # A run refused an app environment's slot asks again within 0.5 s (chatops up: 5 s).
    PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="0.5",
    # The key the gateway signs runs with and the flows check (tests/signed.py signs with it).
    CHATOPS_RUN_SIGNING_KEY="test-run-signing-key-" + os.urandom(8).hex(),
)

pytest_plugins = [
    "tests.testbed.fixtures",
    "tests.testbed.postgres",
    "tests.fakes.github_api",
    "tests.fakes.slack_api",
]
if importlib.util.find_spec("xdist"):  # scripts/test.sh runs two workers (tests/scheduling.py)
    pytest_plugins.append("tests.scheduling")


class _SharedTlsContexts:
    """The ``ssl`` module as Prefect's client module sees it in the test processes: one TLS
    context per CA file instead of a new one for every client.

    Prefect's ``PrefectClient`` loads the whole CA bundle for each client it makes (about 25 ms
    of CPU); a test process makes about 500 of them in the fast tier (every block load or save,
    every ``get_client``), so about a fifth of the tier's CPU went to loading the same file. A
    verifying context is not changed once made, so clients can share one. (Prefect changes the
    one it makes without a CA file, for PREFECT_API_TLS_INSECURE_SKIP_VERIFY: not shared.)"""

    def __getattr__(self, name: str) -> object:
        return getattr(ssl, name)

    def create_default_context(self, cafile: str | None = None) -> ssl.SSLContext:
        return _verifying_context(cafile) if cafile else ssl.create_default_context()


@functools.cache
def _verifying_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect API (temporary SQLite database) for the whole session, with API
    authentication (every client of the tests sends ``PREFECT_API_AUTH_STRING``).

    The database starts as a copy of a migrated one kept between sessions (``migrated_database``):
    a fresh one spends about 6 of the server's 9.3 s start in Prefect's migrations."""
    from unittest import mock

    import prefect.client.orchestration
    import prefect.testing.utilities as harness

    prefect.client.orchestration.ssl = _SharedTlsContexts()  # type: ignore[assignment]

    directory = tempfile.mkdtemp()  # the harness removes it at exit
    shutil.copyfile(migrated_database(), Path(directory) / "prefect-test.db")
    started = harness.prefect_test_harness(server_startup_timeout=120)
    with mock.patch.object(harness, "mkdtemp", return_value=directory):
        started.__enter__()  # the harness names its database file in the directory it is given
    try:
        yield
    finally:
        started.__exit__(None, None, None)


def migrated_database() -> Path:
    """An empty Prefect database, migrated to this Prefect's schema, kept in the user's cache
    (one file per Prefect version): made by starting a server on it once."""
    import prefect
    import prefect.settings
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import _find_available_port

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chatops-deploy"
    template = cache / f"prefect-{prefect.__version__}-migrated.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    making = cache / f"{template.name}.{os.getpid()}"
    url = prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL
    with prefect.settings.temporary_settings(updates={url: f"sqlite+aiosqlite:///{making}"}):
        server = SubprocessASGIServer(port=_find_available_port())
        server.start(timeout=120)
        server.stop()
    with contextlib.closing(sqlite3.connect(making)) as db:  # one file: fold the server's WAL in
        db.execute("PRAGMA journal_mode = DELETE")
    os.replace(making, template)  # another worker may make one at the same time: either wins
    return template


@pytest.fixture
def chatops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CHATOPS_HOME (mirrors, artifact cache, work trees) for one test."""
    home = tmp_path / "chatops-home"
    monkeypatch.setenv("CHATOPS_HOME", str(home))
    return home


@pytest.fixture
def shop(
    prefect_server: None,
    chatops_home: Path,
    deploy_hosts: list,
    app_repo,
    ssh_key,
    fake_github,
) -> Iterator:
    """The example app as ``shop`` on the test bed (see tests/shop.py), GitHub faked."""
    from blocks import GitHubAccess
    from tests.shop import Shop, save_shop

    fake_github.add_repo("acme/shop", git_dir=app_repo.path)
    GitHubAccess(token=fake_github.token, api_url=fake_github.url).save("default", overwrite=True)
    env = save_shop(app_repo, deploy_hosts, ssh_key)
    yield Shop(hosts=deploy_hosts, repo=app_repo, github=fake_github, env=env)
    assert fake_github.violations == []


@pytest.fixture(scope="session")
def served_flows(prefect_server: None) -> Iterator[None]:
    """The runner (``python -m chatops.runner``) serving the deploy and rollback deployments
    against the test Prefect server, as ``chatops up`` runs it."""
    from prefect.settings import PREFECT_API_URL

    env = dict(
        os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_RUNNER_POLL_FREQUENCY="1"
    )
    log = open(_STATE / "runner.log", "wb")  # noqa: SIM115 - closed at teardown
    runner = subprocess.Popen(
        [sys.executable, "-m", "chatops.runner"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_deployments(["deploy/chatops", "rollback/chatops"], runner)
        yield
    finally:
        runner.terminate()
        try:
            runner.wait(timeout=15)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
        log.close()


def wait_for_deployments(names: list[str], runner: subprocess.Popen, seconds: float = 90) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if runner.poll() is not None:
                raise RuntimeError(f"runner exited: {(_STATE / 'runner.log').read_text()[-2000:]}")
            try:
                for name in names:
                    client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                time.sleep(0.3)
    raise RuntimeError(f"deployments {names} not served within {seconds} s")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_STATE, ignore_errors=True)
