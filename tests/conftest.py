"""Shared pytest set-up: the test bed (real sshd hosts, git, mvn), the GitHub/Slack fakes and a
Prefect server for the tests that need one.

State lives in a throwaway CHATOPS_HOME / PREFECT_HOME, set here before Prefect is imported.
"""

import contextlib
import importlib.util
import os
import secrets
import shutil
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
    "tests.gateway_fixtures",
    "tests.testbed.fixtures",
    "tests.testbed.postgres",
    "tests.fakes.github_api",
    "tests.fakes.slack_api",
]
if importlib.util.find_spec("xdist"):  # scripts/test.sh runs two workers (tests/scheduling.py)
    pytest_plugins.append("tests.scheduling")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real Prefect API for the whole session, on PostgreSQL as ``chatops up`` runs it by
    default, with API authentication (every client of the tests sends
    ``PREFECT_API_AUTH_STRING``).

    The cluster starts as a copy of one whose Prefect database is migrated already, kept in the
    user's cache (:func:`migrated_cluster`). On SQLite, a write that raced the server's own event
    writer was answered 503 "database is locked", and Prefect's client waited 2 s before trying
    again: about ten times in each run of the fast tier."""
    from adapters import prefect_tls
    from tests.testbed.postgres import throwaway_postgres

    prefect_tls.share()  # as the runner's and the gateway's (a test process makes ~500 clients)
    with throwaway_postgres(template=migrated_cluster()) as cluster, prefect_api(cluster.url):
        yield


@contextlib.contextmanager
def prefect_api(database_url: str) -> Iterator[None]:
    """A Prefect server on ``database_url`` that every Prefect client of this process talks to,
    as Prefect's own ``prefect_test_harness`` sets one up on a SQLite file.

    The server is started the way Prefect starts its ephemeral one (``SubprocessASGIServer``: the
    same uvicorn command and environment), but from here: importing that class imports the whole
    server application into the test process, 2 to 3 CPU-s per process for nothing."""
    import prefect
    import prefect.context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    from adapters.net import free_port

    async def drain() -> None:  # what this process still sends, before the server stops
        with contextlib.suppress(RuntimeError):  # never started
            await APILogWorker.instance().drain()
        await EventsWorker.drain_all()

    port = free_port()
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"),
            *("--app-dir", str(prefect.__module_path__.parent)),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "error"),
            *("--lifespan", "on"),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for_health(api_url, server)
        with (
            temporary_settings(updates={PREFECT_API_URL: api_url}),
            # Threads that start with a fresh context (a test client's) see it too.
            prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()
            ),
        ):
            yield
            run_coro_as_sync(drain())
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_for_health(api_url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    """Until the Prefect server at ``api_url`` answers its health check."""
    from adapters.net import probe

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {server.returncode}")
        if probe(f"{api_url}/health", timeout=2)[0] == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the Prefect server at {api_url} did not answer within {seconds} s")


def migrated_cluster() -> Path:
    """A stopped PostgreSQL cluster whose Prefect database has this Prefect's schema, kept in the
    user's cache (one per Prefect and PostgreSQL version): made by starting a server on it once.
    Migrating a new database takes about 6 s of a server's start."""
    import prefect

    from tests.testbed.postgres import PG_BIN, Postgres, template_cluster

    def migrate(cluster: Postgres) -> None:
        with prefect_api(cluster.url):  # a server migrates its database as it starts
            pass

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chatops-deploy"
    name = f"prefect-{prefect.__version__}-postgresql-{PG_BIN.parent.name}"
    return template_cluster(cache / name, migrate)


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
