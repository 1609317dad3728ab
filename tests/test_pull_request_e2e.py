"""End to end from a pull request: a comment deploys a fork's head to real hosts and the
comment it is answered in ends with the result; a stranger and a dry run change nothing.

The gateway (real lifespan, real intake) receives signed ``issue_comment`` deliveries built on
octokit's example; the runner of ``served_flows`` runs the deploy and the dry run on the test
bed (real git, mvn, sshd hosts running Tomcat), answering on the fake GitHub's pull request.
The fork is a real clone with its own commit, which reaches the app's repository the way GitHub
makes it reachable: as ``refs/pull/7/head``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey
from starlette.testclient import TestClient

from tests.fakes.github_api import FakeGitHub
from tests.gateway_support import (
    connect_fakes,
    gateway,
    post_github,
    wait_for,
)
from tests.pull_request_support import comment_event
from tests.shop import DEPLOY_PATH, save_shop, serving
from tests.testbed.gitrepo import GREETING_FILE, AppRepo
from tests.testbed.hosts import SshKey, TestHost, sh

pytestmark = pytest.mark.e2e

NUMBER = 7
FORK_GREETING = "Hello from a fork"


@dataclass
class PullRequest:
    client: TestClient
    hosts: list[TestHost]
    repo: AppRepo
    github: FakeGitHub
    head: str

    def comment(self, text: str, login: str = "alice") -> int:
        """Comment ``text`` as ``login``; the id of the comment. GitHub's delivery is 202."""
        body = comment_event(self.github, "acme/shop", NUMBER, login, text)
        response = post_github(self.client, body, "issue_comment")
        assert response.status_code == 202, response.text
        return response.json()["comment"]

    def answer(self, done: str, seconds: float = 30) -> dict:
        """The bot's comment on the pull request once its text contains ``done``."""

        def found() -> dict | None:
            mine = [c for c in self.github.comments("acme/shop", NUMBER) if c["user"] != "alice"]
            mine = [c for c in mine if c["user"] == self.github.login]
            return next((c for c in mine if done in c["body"]), None)

        return wait_for(found, seconds)


@pytest.fixture
def pull_request(
    served_flows: None,
    chatops_home: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> Iterator[PullRequest]:
    connect_fakes(app_repo.path, fake_github)
    head = fork_commit(app_repo, tmp_path / "fork")
    fake_github.add_pull_request(
        "acme/shop", NUMBER, head, head_ref="friendly-greeting", head_repo="octo/shop"
    )
    fake_github.set_permission("acme/shop", "alice", "write")
    save_shop(app_repo, deploy_hosts, ssh_key)
    try:
        with gateway() as client:
            yield PullRequest(client, deploy_hosts, app_repo, fake_github, head)
    finally:
        app_repo.git("update-ref", "-d", f"refs/pull/{NUMBER}/head")
    assert fake_github.violations == []


def fork_commit(repo: AppRepo, fork: Path) -> str:
    """A fork of ``repo`` with one commit of its own (a new greeting), pushed to ``repo`` as
    GitHub does for a pull request: ``refs/pull/N/head``. Its sha."""
    sh(["git", "clone", "-q", repo.url, str(fork)])
    greeting = fork / GREETING_FILE
    text = re.sub(r"^greeting=.*$", f"greeting={FORK_GREETING}", greeting.read_text(), flags=re.M)
    greeting.write_text(text)
    who = ["-c", "user.name=Octo", "-c", "user.email=octo@example.invalid"]
    sh(["git", *who, "-C", str(fork), "commit", "-qam", "A friendlier greeting"])
    sh(["git", "-C", str(fork), "push", "-q", repo.url, f"HEAD:refs/pull/{NUMBER}/head"])
    return sh(["git", "-C", str(fork), "rev-parse", "HEAD"]).stdout.strip()


def host_files(host: TestHost) -> str:
    listing = host.run(f"find {DEPLOY_PATH} -maxdepth 2 -printf '%p %s %T@\\n' | sort", check=True)
    return listing.stdout


def runs_for(comment_id: int) -> list:
    with get_client(sync_client=True) as client:
        key = FlowRunFilterIdempotencyKey(any_=[f"github-comment-{comment_id}"])
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(idempotency_key=key))


def test_deploy_to_staging_on_a_fork_s_pull_request_deploys_its_head(
    pull_request: PullRequest,
) -> None:
    github, head = pull_request.github, pull_request.head
    asked = pull_request.comment(".deploy to staging")

    final = pull_request.answer(":white_check_mark: **Deployed**", seconds=300)

    assert github.reactions(asked) == ["eyes", "rocket"]
    for host in pull_request.hosts:
        assert head in serving(host), "every host runs the fork's head"
        assert FORK_GREETING in host.http_get("/demo/")[1]
    body = final["body"]
    assert body.startswith(":white_check_mark: **Deployed** `shop@pull/7/head")
    assert f"Commit `{head[:12]}`" in body and "/runs/flow-run/" in body
    for step in ("checkout", "build", "upload", "activate", "health check"):
        assert re.search(rf"- :(white_check_mark|recycle): {step}", body), step
    edits = final["edits"]
    assert edits[0].startswith(":eyes: alice asked to deploy this pull request")
    assert any("in progress" in edit for edit in edits[1:-1]), "kept up to date while it ran"
    assert len([c for c in github.comments("acme/shop", NUMBER) if c["user"] == github.login]) == 1
    [deployment] = github.deployments
    assert deployment["sha"] == head and deployment["environment"] == "staging"
    assert deployment["payload"]["pull_request"] == {
        "number": NUMBER,
        "url": f"https://github.com/acme/shop/pull/{NUMBER}",
    }
    assert [s["state"] for s in github.statuses(deployment["id"])] == ["in_progress", "success"]
    [run] = runs_for(asked)
    assert run.parameters["ref"] == "pull/7/head" and run.parameters["sha"] == head


def test_a_stranger_is_refused_and_a_dry_run_touches_nothing(pull_request: PullRequest) -> None:
    github = pull_request.github
    before = {host.address: host_files(host) for host in pull_request.hosts}

    github.set_permission("acme/shop", "mallory", "read")
    stranger = pull_request.comment(".deploy to staging", login="mallory")
    refusal = pull_request.answer("only people with write access")
    assert refusal["body"].startswith(":no_entry: @mallory, only people with write access")

    dry = pull_request.comment(".noop to staging")
    plan = pull_request.answer("**Dry run of noop shop@pull/7/head → staging**", seconds=200)
    text = plan["body"]
    assert plan["edits"][0].startswith(":hourglass: Dry run of this pull request to staging")
    assert f"• commit: pull/7/head is {pull_request.head[:12]}" in text
    assert ":white_check_mark: allowed: alice may deploy here" in text
    for host in pull_request.hosts:
        assert f"• change {host.address}: nothing → {pull_request.head[:7]}: a first deploy" in text

    assert runs_for(stranger) == [], "the stranger's comment started no run"
    assert len(runs_for(dry)) == 1
    assert github.deployments == [], "neither recorded a GitHub deployment"
    assert {host.address: host_files(host) for host in pull_request.hosts} == before
    assert github.reactions(stranger) == ["eyes"]
