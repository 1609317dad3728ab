"""pytest plugin: the real-component test bed (sshd hosts in network namespaces, git repo).

Fixtures (listed in tests/conftest.py's ``pytest_plugins``):

``ssh_key`` (session)
    ``SshKey`` with ``.private`` / ``.public`` paths and ``.private_text``; the hosts accept it
    for ``root``.

``deploy_hosts`` (function)
    ``list[TestHost]``, 2 by default. For another count::

        @pytest.mark.parametrize("deploy_hosts", [3], indirect=True)
        def test_three(deploy_hosts): ...

    Each host: ``.address`` (10.213.N.2, sshd on :22, Tomcat later on :8080), ``.known_hosts_line``,
    ``.root`` (the directory the host sees as /srv/app), ``.run(cmd)``, ``.http_get(path)``,
    faults ``.kill_sshd()`` / ``.link_down()`` / ``.drop_ssh()``. Tomcat is not running yet;
    ``/srv/app/bin/restart-tomcat [/srv/app]`` starts it with ``/srv/app/current/demo.war``.
    After the test every process in the hosts is killed and the namespaces are gone. Set
    ``TESTBED_KEEP=1`` to keep the host directories (logs, releases) for a look afterwards.

``app_repo`` (session)
    ``AppRepo``: a git repository of examples/webapp with tags ``v1`` and ``v2`` (branches
    ``main`` and ``feature/login`` at v2); ``.url``, ``.path``, ``.v1``, ``.v2``, ``.greetings``.

The hosts need root and the packages of scripts/install-deps.sh; without them the tests that use
``deploy_hosts`` fail with a message saying what is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator

import pytest

from tests.testbed.gitrepo import AppRepo, make_app_repo
from tests.testbed.hosts import SshKey, TestHost, make_ssh_key, missing_requirements, netns_hosts
from tests.testbed.hosts import preclean as _preclean

_REPORT_ATTR = "_testbed_call_report"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember the call-phase report, so host teardown can attach logs to failed tests."""
    report = yield
    if report.when == "call":
        setattr(item, _REPORT_ATTR, report)
    return report


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshKey]:
    """An ed25519 key pair (no passphrase) that every test host accepts for root."""
    directory = tmp_path_factory.mktemp("ssh_key")
    yield make_ssh_key(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def testbed_ready() -> None:
    """Checks root + tools once, and removes hosts left behind by aborted runs."""
    missing = missing_requirements()
    if missing:
        pytest.fail(
            "test bed unavailable, missing: "
            + ", ".join(missing)
            + " (run scripts/install-deps.sh as root)",
            pytrace=False,
        )
    _preclean()


@pytest.fixture
def deploy_hosts(
    request: pytest.FixtureRequest,
    ssh_key: SshKey,
    testbed_ready: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[TestHost]]:
    """Fresh hosts for one test (2 unless parametrized indirectly with another count)."""
    count = int(getattr(request, "param", 2))
    workdir = tmp_path_factory.mktemp("hosts")
    try:
        with netns_hosts(count, ssh_key, workdir) as hosts:
            yield hosts
            _report_logs_on_failure(request, hosts)
    finally:
        if not os.environ.get("TESTBED_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


def _report_logs_on_failure(request: pytest.FixtureRequest, hosts: list[TestHost]) -> None:
    report = getattr(request.node, _REPORT_ATTR, None)
    if report is not None and report.failed:
        for host in hosts:
            print(host.log_tails())


@pytest.fixture(scope="session")
def app_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppRepo]:
    """The example web app as a git repository with two deployable commits (v1, v2)."""
    directory = tmp_path_factory.mktemp("app_repo")
    repo = make_app_repo(directory / "demo")
    yield repo
    shutil.rmtree(directory, ignore_errors=True)
