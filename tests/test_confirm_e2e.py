"""Confirmation end to end: a deploy to an environment with ``confirm: true`` shows what it would
change (a real dry run on the test bed's hosts) and starts only after its requester says yes, in
Slack (signed requests to the gateway, the fake Slack's response_url) and in the terminal (the
real ``chatops`` CLI against a real ``chatops up``).
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.settings import temporary_settings
from starlette.testclient import TestClient

from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    BOB,
    DEPLOYS,
    action_body,
    connect_fakes,
    gateway,
    post_slack,
    slash_body,
    wait_for,
)
from tests.shop import save_shop, serving, wait_finished
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost
from tests.up_server import ChatopsUp, post_json

pytestmark = pytest.mark.e2e

DRY_RUN_SECONDS = 180


@dataclass
class Asking:
    """The gateway, with shop's staging asking first, on fresh hosts."""

    client: TestClient
    hosts: list[TestHost]
    repo: AppRepo
    github: FakeGitHub
    slack: FakeSlack
    clicks: int = 0

    def ask(self, text: str, user: str = ALICE) -> dict:
        """Type ``/deploy text``; the answer that carries buttons (it follows the dry run)."""
        name = f"ask-{text}"
        body = slash_body(text, self.slack.response_url(name), user=user, channel=DEPLOYS)
        first = post_slack(self.client, "/slack/commands", body).json()
        if first.get("blocks"):
            return first
        assert first["text"].startswith("Working on it"), first
        answers = wait_for(lambda: self.slack.responses(name), DRY_RUN_SECONDS)
        [question] = answers
        return question

    def click(self, action: str, value: str, user: str = ALICE) -> dict:
        self.clicks += 1
        name = f"click-{self.clicks}"
        body = action_body(action, value, self.slack.response_url(name), user, DEPLOYS)
        assert post_slack(self.client, "/slack/interactions", body).status_code == 200
        [answer] = wait_for(lambda: self.slack.responses(name), 60)
        return answer


def deploy_runs() -> int:
    """How many runs of the deploy flow Prefect has."""
    with get_client(sync_client=True) as client:
        return len(
            client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy"])), limit=200
            )
        )


def deployed_anything(hosts: list[TestHost]) -> bool:
    return any((host.root / "current").exists() for host in hosts)


@pytest.fixture
def asking(
    served_flows: None,
    chatops_home: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> Iterator[Asking]:
    connect_fakes(app_repo.path, fake_github, fake_slack)
    save_shop(app_repo, deploy_hosts, ssh_key, confirm=True)
    with gateway() as client:
        yield Asking(client, deploy_hosts, app_repo, fake_github, fake_slack)
    assert fake_github.violations == []
    assert fake_slack.violations == []


def buttons(question: dict) -> dict[str, str]:
    """The question's buttons: action id → value."""
    [actions] = [b for b in question["blocks"] if b["type"] == "actions"]
    return {e["action_id"]: e["value"] for e in actions["elements"]}


def test_slack_shows_what_would_change_and_deploys_only_after_the_requesters_click(
    asking: Asking,
) -> None:
    before = deploy_runs()

    question = asking.ask("shop@v1 to staging")

    text = question["text"]
    assert question["response_type"] == "in_channel"
    assert text.startswith("*Dry run of noop shop@v1 → staging* (nothing was changed).")
    assert f"• commit: v1 is {asking.repo.v1[:12]}" in text
    for host in asking.hosts:
        assert f":white_check_mark: host {host.address}: " in text
    assert f":raised_hand: <@{ALICE}>, deploy *shop@v1 → staging*? Only you can answer" in text
    value = buttons(question)["confirm_deploy"]
    assert buttons(question) == {"confirm_deploy": value, "cancel_deploy": value}
    assert deploy_runs() == before, "no run before the button"
    assert not deployed_anything(asking.hosts)

    refused = asking.click("confirm_deploy", value, user=BOB)
    assert refused["response_type"] == "ephemeral"
    assert refused["text"].startswith(f":no_entry: Only <@{ALICE}> can answer this question")
    assert deploy_runs() == before, "someone else's click starts nothing"

    started = asking.click("confirm_deploy", value)
    assert started["replace_original"] is True
    assert f"<@{ALICE}> is deploying *shop@v1 → staging*" in started["text"]
    run_id = started["text"].split("/runs/flow-run/")[1].split("|")[0]
    run = wait_finished(run_id)
    assert run.state.is_completed(), run.state.message
    assert run.parameters["requested_by"] == ALICE and run.parameters["via"] == "slack"
    assert deploy_runs() == before + 1
    for host in asking.hosts:
        assert asking.repo.v1 in serving(host)


def test_after_cancel_nothing_runs_not_even_when_deploy_is_clicked_next(asking: Asking) -> None:
    before = deploy_runs()
    value = buttons(asking.ask("shop@v1 to staging"))["cancel_deploy"]

    cancelled = asking.click("cancel_deploy", value)
    assert cancelled["replace_original"] is True
    assert cancelled["text"] == (
        f":no_entry_sign: <@{ALICE}> cancelled the deploy of *shop@v1 to staging*; "
        "nothing was started."
    )
    again = asking.click("confirm_deploy", value)
    assert again["text"].startswith("Could not start *shop@v1 to staging*: Cancelled by")

    assert deploy_runs() == before
    assert not deployed_anything(asking.hosts)
    assert asking.github.deployments == [], "no GitHub deployment either"


# --------------------------------------------------------------------------- the terminal
def chatops_cli(
    up: ChatopsUp, *args: str, stdin: int | None = subprocess.DEVNULL, user: str = "alice"
) -> subprocess.CompletedProcess[str]:
    """``chatops ARGS`` as ``user``, its standard input ``stdin`` (no terminal by default)."""
    chatops = Path(sys.executable).with_name("chatops")
    return subprocess.run(
        [str(chatops), *args],
        env=up.cli_env(user),
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def cli_deploy_runs(up: ChatopsUp) -> int:
    found = post_json(
        f"{up.api}/flow_runs/filter", {"flows": {"name": {"any_": ["deploy"]}}}, up.auth
    )
    return len(found)  # type: ignore[arg-type]


def test_the_terminal_asks_refuses_without_a_tty_and_deploys_with_yes(
    tmp_path: Path, deploy_hosts: list[TestHost], app_repo: AppRepo, ssh_key: SshKey
) -> None:
    with ChatopsUp(tmp_path / "home") as up:
        with temporary_settings(up.prefect_settings()):
            save_shop(app_repo, deploy_hosts, ssh_key, batch_size=2, confirm=True)

        refused = chatops_cli(up, "deploy", "shop@v1", "to", "staging")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert (
            "Deploys of shop to staging are confirmed first, and there is no terminal to ask "
            "on: run chatops deploy shop@v1 to staging --yes"
        ) in refused.stdout
        assert cli_deploy_runs(up) == 0

        main, terminal = pty.openpty()
        try:
            os.write(main, b"n\n")
            declined = chatops_cli(up, "deploy", "shop@v1", "to", "staging", stdin=terminal)
        finally:
            os.close(main)
            os.close(terminal)
        said = declined.stdout
        assert declined.returncode == 2, said + declined.stderr
        assert "Dry run of noop shop@v1 → staging (nothing was changed)." in said
        assert "shop@v1 → staging waits for your yes." in said
        assert said.rstrip().endswith("Deploy? [y/N] Not deployed: nothing was started.")
        assert cli_deploy_runs(up) == 0
        assert not deployed_anything(deploy_hosts)

        yes = chatops_cli(up, "deploy", "shop@v1", "to", "staging", "--yes")
        assert yes.returncode == 0, yes.stdout + yes.stderr
        assert yes.stdout.rstrip().endswith("Completed")
        assert cli_deploy_runs(up) == 1
        for host in deploy_hosts:
            assert app_repo.v1 in serving(host)
