"""Each chat verb from the terminal, end to end: a real ``chatops up``, the real ``chatops`` CLI in
fresh processes (as different CLI users, each with their own token), two sshd hosts running
Tomcat.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.settings import temporary_settings

from tests.shop import save_shop
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost
from tests.up_server import ChatopsUp, post_json

pytestmark = pytest.mark.e2e


@dataclass
class Terminal:
    up: ChatopsUp
    hosts: list[TestHost]
    repo: AppRepo

    def say(
        self, *words: str, user: str = "alice", code: int = 0, env: dict[str, str] | None = None
    ) -> str:
        """Run ``chatops WORDS`` as ``user``; its output (the exit code must be ``code``)."""
        done = self.up.cli(*words, user=user, env=env)
        assert done.returncode == code, done.stdout + done.stderr
        return done.stdout + done.stderr

    def runs(self) -> list[dict]:
        return post_json(
            f"{self.up.api}/flow_runs/filter", {"sort": "START_TIME_DESC"}, self.up.auth
        )  # type: ignore[return-value]

    def tasks(self, run_id: str) -> list[str]:
        found = post_json(
            f"{self.up.api}/task_runs/filter",
            {"flow_runs": {"id": {"any_": [run_id]}}},
            self.up.auth,
        )
        return [t["name"] for t in found]  # type: ignore[union-attr]


@pytest.fixture
def terminal(
    tmp_path: Path, deploy_hosts: list[TestHost], app_repo: AppRepo, ssh_key: SshKey
) -> Iterator[Terminal]:
    with ChatopsUp(tmp_path / "home") as up:
        with temporary_settings(up.prefect_settings()):
            save_shop(app_repo, deploy_hosts, ssh_key, batch_size=2)
        yield Terminal(up, deploy_hosts, app_repo)


def serving(host: TestHost) -> str:
    return host.http_get("/demo/health")[1]


def test_deploy_then_rollback_switches_back_without_building_or_uploading(
    terminal: Terminal,
) -> None:
    # The CLI cannot reach Prefect itself: it follows the run through the gateway alone.
    no_prefect = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    first = terminal.say("deploy", "shop@v1", "to", "staging", env=no_prefect)
    assert "lost contact" not in first
    assert "✓ build" in first and "shop@v1" in first and first.rstrip().endswith("Completed")
    second = terminal.say("deploy", "acme/shop@v2", "to", "stg")
    assert "↔ changes: 1 commit added" in second
    assert second.index("✓ checkout") < second.index("↔ changes"), second
    assert all(terminal.repo.v2 in serving(h) for h in terminal.hosts)

    back = terminal.say("rollback", "shop", "in", "staging")
    assert "is rolling back" in back and back.rstrip().endswith("Completed")
    assert "↔ changes: 1 commit removed" in back
    assert all(terminal.repo.v1 in serving(h) for h in terminal.hosts)
    [rollback] = [r for r in terminal.runs() if "previous release" in r["name"]]
    steps = terminal.tasks(rollback["id"])
    assert not [s for s in steps if s.startswith(("build", "upload", "checkout"))], steps
    assert any(s.startswith("activate") for s in steps)
    status = terminal.say("status")
    assert f"shop on staging: v1 at {terminal.repo.v1[:12]}" in status


def test_a_lock_stops_other_users_and_runs_started_in_the_prefect_ui(terminal: Terminal) -> None:
    terminal.say("deploy", "shop@v1", "to", "staging")
    locked = terminal.say("lock", "staging", "to", "shop:", "QA", "is", "testing")
    assert "alice locked staging on shop: QA is testing" in locked

    before = len(terminal.runs())
    refused = terminal.say("deploy", "shop@v2", "to", "staging", user="bob", code=2)
    assert "staging on shop is locked by alice (cli)" in refused and "QA is testing" in refused
    assert len(terminal.runs()) == before, "a refused request makes no run"
    assert "locked by alice" in terminal.say("check", "staging", "on", "shop", user="bob", code=2)

    started = time.monotonic()
    run = ui_run(terminal, "deploy", {"app": "shop", "environment": "staging", "ref": "v2"})
    assert run["state_type"] == "FAILED", run["state_name"]
    assert (
        "is locked by alice (cli)" in run["state"]["message"]
        and "QA is testing" in (run["state"]["message"])
    )
    assert time.monotonic() - started < 30, "it failed at once, before any step"
    assert all(terminal.repo.v1 in serving(h) for h in terminal.hosts)

    assert "unlocked" in terminal.say("unlock", "staging", "on", "shop")
    terminal.say("deploy", "shop@v2", "to", "staging", user="bob")
    assert all(terminal.repo.v2 in serving(h) for h in terminal.hosts)


def ui_run(terminal: Terminal, flow: str, parameters: dict) -> dict:
    """A run of ``flow`` started as "Run" in the Prefect UI does, once it is over."""
    deployment = post_json(
        f"{terminal.up.api}/deployments/filter",
        {"deployments": {"name": {"any_": ["chatops"]}}, "flows": {"name": {"any_": [flow]}}},
        terminal.up.auth,
    )[0]  # type: ignore[index]
    created = post_json(
        f"{terminal.up.api}/deployments/{deployment['id']}/create_flow_run",
        {"parameters": parameters},
        terminal.up.auth,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = post_json(
            f"{terminal.up.api}/flow_runs/filter",
            {"flow_runs": {"id": {"any_": [created["id"]]}}},
            terminal.up.auth,
        )[0]  # type: ignore[index]
        if run["state_type"] in ("FAILED", "COMPLETED", "CRASHED"):
            return run
        time.sleep(0.3)
    raise AssertionError(f"the {flow} run started in the UI did not end within 90 s")


def test_a_freeze_stops_every_deploy_but_not_a_rollback(terminal: Terminal) -> None:
    terminal.say("deploy", "shop@v1", "to", "staging")
    terminal.say("deploy", "shop@v2", "to", "staging")
    frozen = terminal.say("freeze", "staging:", "release", "week")
    assert "alice froze staging: release week" in frozen

    before = len(terminal.runs())
    for user in ("alice", "bob"):  # whoever froze it too: a freeze is not a lock
        refused = terminal.say("deploy", "shop@v1", "to", "staging", user=user, code=2)
        assert "staging is frozen by alice (cli)" in refused and "release week" in refused
        assert "rollback shop in staging" in refused
    assert len(terminal.runs()) == before, "a refused request makes no run"
    run = ui_run(terminal, "deploy", {"app": "shop", "environment": "staging", "ref": "v1"})
    assert run["state_type"] == "FAILED", run["state_name"]
    assert "staging is frozen by alice (cli): release week" in run["state"]["message"]
    assert all(terminal.repo.v2 in serving(h) for h in terminal.hosts)

    terminal.say("rollback", "shop", "in", "staging", user="bob")  # a rollback still runs
    assert all(terminal.repo.v1 in serving(h) for h in terminal.hosts)
    assert "unfroze staging" in terminal.say("unfreeze", "staging")
    terminal.say("deploy", "shop@v2", "to", "staging", user="bob")
    assert all(terminal.repo.v2 in serving(h) for h in terminal.hosts)


def test_status_verify_reports_drift_and_unreachable_hosts(terminal: Terminal) -> None:
    terminal.say("deploy", "shop@v1", "to", "staging")
    clean = terminal.say("status", "shop", "--verify")
    assert "All 2 hosts run what was recorded" in clean
    edited, gone = terminal.hosts
    release = (edited.root / "current").readlink().name
    edited.run(
        f"cp -a /srv/app/releases/{release} /srv/app/releases/hand-made && "
        "ln -sfn releases/hand-made /srv/app/current",
        check=True,
    )
    gone.kill_sshd()
    drift = terminal.say("status", "shop", "--verify")
    assert "2 of 2 hosts differ from the record" in drift
    assert (
        f"{edited.address}: runs hand-made" in drift and f"but the record says {release}" in drift
    )
    assert f"{gone.address}: cannot be checked" in drift and "is sshd running" in drift
    gone.start_sshd()


def test_mistakes_are_refused_before_any_run_exists(terminal: Terminal) -> None:
    before = len(terminal.runs())
    assert "did you mean 'staging'" in terminal.say("deploy", "shop", "to", "stagin", code=2)
    assert "(did you mean shop?). Apps: shop." in terminal.say("deploy", "shopp", code=2)
    assert "has no host web-9" in terminal.say("deploy", "shop", "to", "staging/web-9", code=2)
    assert "'$'" in terminal.say("deploy", "shop@$(id)", code=2)
    no_token = terminal.say("deploy", "shop", "to", "staging", env={"CHATOPS_TOKEN": ""}, code=3)
    assert no_token.count("\n") == 1 and "chatops login" in no_token
    assert "rollback APP in ENV" in terminal.say("rollback", "shop", code=2)
    assert len(terminal.runs()) == before
    assert "Type after /deploy" not in terminal.say("help") and "rollback shop in production" in (
        terminal.say("help")
    )
