"""End to end: the example host script switches releases inside a running Tomcat.

Real hosts of the test bed run examples/hosts/restart-tomcat.sh under the deploy flow. While the
flow switches them, a client polls every host's app as a user's browser would: it must only ever
get 200s, first from the old commit and then from the new one, and Tomcat's JVM must be the same
process before and after (no restart).
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flows.deploy import deploy
from flows.rollback import rollback
from tests.shop import Shop, states
from tests.testbed.gitrepo import AppRepo, _git
from tests.testbed.hosts import TestHost

pytestmark = pytest.mark.e2e

BROKEN_LISTENER = """package demo;

import jakarta.servlet.ServletContextEvent;
import jakarta.servlet.ServletContextListener;
import jakarta.servlet.annotation.WebListener;

/** Makes this build fail to start in Tomcat, as an app missing its database would. */
@WebListener
public class Broken implements ServletContextListener {
    @Override
    public void contextInitialized(ServletContextEvent event) {
        throw new IllegalStateException("no database");
    }
}
"""


class Poller:
    """Polls one host's health URL every ~20 ms and keeps every answer, in order."""

    def __init__(self, host: TestHost) -> None:
        self.host = host
        self.answers: list[tuple[int | str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(self.host.http_get("/demo/health", timeout=5))
            except OSError as exc:
                self.answers.append(("error", repr(exc)))
            time.sleep(0.02)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def failures(self) -> list[tuple[int | str, str]]:
        return [answer for answer in self.answers if answer[0] != 200]

    def commits(self, shas: dict[str, str]) -> list[str]:
        """The names of the commits the host answered with, each run of answers once."""
        seen: list[str] = []
        for _, body in self.answers:
            name = next((name for name, sha in shas.items() if sha in body), body[:60])
            if not seen or seen[-1] != name:
                seen.append(name)
        return seen


@contextmanager
def polling(hosts: list[TestHost]) -> Iterator[list[Poller]]:
    """A :class:`Poller` on each host while the block runs."""
    pollers = [Poller(host) for host in hosts]
    for poller in pollers:
        poller.start()
    try:
        yield pollers
    finally:
        for poller in pollers:
            poller.stop()


def tomcat_pid(host: TestHost) -> int:
    """The pid of the host's Tomcat JVM, as catalina.sh wrote it."""
    return int((host.root / "tomcat" / "tomcat.pid").read_text())


def versions(host: TestHost) -> list[str]:
    """The wars in the host's webapps/: one per version of the app Tomcat has."""
    return sorted(war.name for war in (host.root / "tomcat" / "webapps").glob("*.war"))


def push_broken_commit(repo: AppRepo, workdir: Path) -> str:
    """A commit on branch ``broken`` (from v2) whose war deploys but fails to start; its sha."""
    clone = workdir / "broken"
    _git(workdir, "clone", "-q", repo.url, str(clone))
    source = clone / "src" / "main" / "java" / "demo" / "Broken.java"
    source.write_text(BROKEN_LISTENER)
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", "Fail at start-up")
    _git(clone, "push", "-q", "--force", "origin", "HEAD:refs/heads/broken")
    return _git(clone, "rev-parse", "HEAD")


def test_redeploy_and_rollback_switch_inside_the_running_tomcat(shop: Shop) -> None:
    shas = {"v1": shop.repo.v1, "v2": shop.repo.v2}
    deploy(app="shop", environment="staging", ref="v1")
    deploy(app="shop", environment="staging", ref="v2")
    pids = {host.address: tomcat_pid(host) for host in shop.hosts}

    with polling(shop.hosts) as pollers:
        started = time.monotonic()
        back = deploy(app="shop", environment="staging", ref="v1")  # built before: no build
        took = time.monotonic() - started
        time.sleep(0.5)
    print(f"measured: redeploy of a built commit to 2 hosts (batch_size 1) took {took:.1f} s")
    assert back.step("build").state == "cached"
    for host, poller in zip(shop.hosts, pollers, strict=True):
        assert poller.failures() == [], f"{host.address} failed requests during the switch"
        assert poller.commits(shas) == ["v2", "v1"], host.address
        assert tomcat_pid(host) == pids[host.address], f"Tomcat on {host.address} restarted"
        assert len(versions(host)) == 1, versions(host)  # the old version was undeployed
        assert versions(host)[0].startswith("demo##")

    with polling(shop.hosts) as pollers:
        rolled = rollback(app="shop", environment="staging")
        time.sleep(0.5)
    assert rolled.sha == shop.repo.v2
    for host, poller in zip(shop.hosts, pollers, strict=True):
        assert poller.failures() == [], f"{host.address} failed requests during the rollback"
        assert poller.commits(shas) == ["v1", "v2"], host.address
        assert tomcat_pid(host) == pids[host.address], f"Tomcat on {host.address} restarted"
        assert shop.current(host).endswith(shop.repo.v2[:7])


def test_a_new_version_that_fails_to_start_leaves_the_old_one_serving(
    shop: Shop, tmp_path: Path
) -> None:
    broken = push_broken_commit(shop.repo, tmp_path)
    shas = {"v1": shop.repo.v1, "broken": broken}
    deploy(app="shop", environment="staging", ref="v1")
    first = shop.hosts[0]  # batch_size 1: the deploy stops at the first host
    pid = tomcat_pid(first)
    before = versions(first)

    with polling(shop.hosts) as pollers:
        started = time.monotonic()
        state = deploy(app="shop", environment="staging", ref="broken", return_state=True)
        took = time.monotonic() - started
    print(
        f"measured: a version that fails to start failed the deploy in {took:.1f} s, build included"
    )
    assert state.is_failed()
    for poller in pollers:
        assert poller.failures() == []
        assert poller.commits(shas) == ["v1"]
    assert tomcat_pid(first) == pid
    assert versions(first) == before
    assert shop.current(first).endswith(shop.repo.v1[:7])
    assert not (first.root / "SWITCHING").exists()

    report = str(state.message)
    assert f"activate failed on {first.address}" in report
    assert f"{first.address}: restart failed: exit code 3" in report
    assert "failed to start in Tomcat" in report and "still serves" in report
    deployment = shop.github.deployments[-1]
    assert states(shop.github, deployment["id"]) == ["in_progress", "error"]
    description = shop.github.statuses(deployment["id"])[-1]["description"]
    assert f"activate failed on {first.address}" in description
