"""End to end through the front door: signed Slack and GitHub requests become real deploys.

The gateway (real lifespan, real intake creating real runs of ``deploy/chatops``) starts
deploys; the runner of ``served_flows`` executes them on the test bed (real git, mvn, sshd hosts
running Tomcat), reporting to the fake GitHub API and the fake Slack Web API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    DEPLOYS,
    connect_fakes,
    deployment_made_on_github,
    gateway,
    post_cli,
    post_github,
    post_slack,
    slash_body,
    wait_for,
)
from tests.shop import DEPLOY_PATH, save_shop, serving, wait_finished
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost

pytestmark = pytest.mark.e2e


@dataclass
class FrontDoor:
    client: TestClient
    hosts: list[TestHost]
    repo: AppRepo
    github: FakeGitHub
    slack: FakeSlack

    def serving(self, host: TestHost) -> str:
        return serving(host)


@pytest.fixture
def front_door(
    served_flows: None,
    chatops_home: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> Iterator[FrontDoor]:
    connect_fakes(app_repo.path, fake_github, fake_slack)
    save_shop(app_repo, deploy_hosts, ssh_key)
    with gateway() as client:
        yield FrontDoor(client, deploy_hosts, app_repo, fake_github, fake_slack)
    assert fake_github.violations == []
    assert fake_slack.violations == []


def test_slash_command_deploys_v1_and_keeps_the_channel_message_current(
    front_door: FrontDoor,
) -> None:
    url = front_door.slack.response_url("deploy-v1")
    body = slash_body("shop@v1 to staging", url, user=ALICE, channel=DEPLOYS)
    started = time.monotonic()
    response = post_slack(front_door.client, "/slack/commands", body)
    assert time.monotonic() - started < 3
    reply = response.json()
    if reply["text"].startswith(":hourglass: Queued"):  # Prefect was busy: the link follows
        reply = wait_for(lambda: front_door.slack.responses("deploy-v1"), 30)[0]
    assert reply["response_type"] == "in_channel"
    assert "*shop@v1 → staging*" in reply["text"]
    run_id = reply["text"].split("/runs/flow-run/")[1].split("|")[0]

    run = wait_finished(run_id)

    assert run.state.is_completed(), run.state.message
    for host in front_door.hosts:
        assert front_door.repo.v1 in front_door.serving(host)
    [message] = front_door.slack.top_level(DEPLOYS)
    assert message.updates >= 1
    assert "in progress" in message.history[0].text
    assert message.history[-1].text.startswith(
        f"Deploy shop@v1 ({front_door.repo.v1[:7]}) → staging: success"
    )
    [deployment] = front_door.github.deployments
    assert deployment["ref"] == "v1"
    assert [s["state"] for s in front_door.github.statuses(deployment["id"])] == [
        "in_progress",
        "success",
    ]


def test_deployment_created_on_github_is_deployed_and_reported_on_that_deployment(
    front_door: FrontDoor,
) -> None:
    created, body = deployment_made_on_github(front_door.github, "v1", "from the GitHub UI")

    response = post_github(front_door.client, body, "deployment")
    assert response.status_code == 202
    [queued] = response.json()["queued"]
    again = post_github(front_door.client, body, "deployment").json()["queued"][0]
    assert again["request"] == queued["request"]
    store = front_door.client.app.state.intake.store
    run_id = wait_for(lambda: store.ticket(queued["request"]).run_id, 30)

    run = wait_finished(run_id)

    assert run.state.is_completed(), run.state.message
    assert run.parameters["deployment_id"] == created.id
    assert run.parameters["requested_by"] == "octocat"
    states = [s["state"] for s in front_door.github.statuses(created.id)]
    assert states == ["in_progress", "success"]
    assert [d["id"] for d in front_door.github.deployments] == [created.id]
    for host in front_door.hosts:
        assert front_door.repo.v1 in front_door.serving(host)
    assert front_door.github.deployments[0]["payload"] == {"note": "from the GitHub UI"}


def host_files(host: TestHost) -> str:
    """What a deploy writes on ``host``: its deploy folder, two levels deep, with times."""
    listing = host.run(f"find {DEPLOY_PATH} -maxdepth 2 -printf '%p %s %T@\\n' | sort", check=True)
    return listing.stdout


def test_a_dry_run_reports_every_check_and_changes_nothing(front_door: FrontDoor) -> None:
    repo, github, slack = front_door.repo, front_door.github, front_door.slack
    ticket = post_cli(front_door.client, "deploy shop@v1 to staging").json()["ticket"]
    store = front_door.client.app.state.intake.store
    run_id = ticket["run_id"] or wait_for(lambda: store.ticket(ticket["id"]).run_id, 30)
    assert wait_finished(run_id).state.is_completed()
    before = {host.address: host_files(host) for host in front_door.hosts}
    deployments, messages = len(github.deployments), len(slack.top_level())
    github.set_commit_statuses("acme/shop", repo.v2, {"ci/test": "failure", "lint": "success"})

    red = post_cli(front_door.client, "noop shop@v2 to staging").json()["text"]
    assert red.startswith("*Dry run of noop shop@v2 → staging* (nothing was changed).")
    assert "A deploy would stop at: required checks." in red
    assert ":x: required checks: ci/test (failure); a forced deploy (`!`) skips them" in red
    assert ":white_check_mark: allowed: alice may deploy here" in red
    assert f"• commit: v2 is {repo.v2[:12]}" in red
    built = "• build: built already: " in red  # an earlier test may have built v2
    assert built or "• build: not built yet: the deploy builds it first" in red
    for host in front_door.hosts:
        assert f":white_check_mark: host {host.address}: runs " in red
        assert f"({repo.v1[:7]}); " in red and " GB free" in red
        assert f"• change {host.address}: {repo.v1[:7]} → {repo.v2[:7]}: 1 commits added" in red

    github.set_commit_statuses("acme/shop", repo.v2, {"ci/test": "success"})
    green = post_cli(front_door.client, "noop shop@v2 to staging").json()["text"]
    assert "A deploy would go ahead." in green
    assert ":white_check_mark: required checks: every required status is green" in green

    assert {host.address: host_files(host) for host in front_door.hosts} == before
    assert len(github.deployments) == deployments, "a dry run records no GitHub deployment"
    assert len(slack.top_level()) == messages, "a dry run posts nothing to Slack"
    for host in front_door.hosts:
        assert repo.v1 in front_door.serving(host)
