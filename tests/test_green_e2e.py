"""End to end: CI's webhooks deploy a branch on green, on real hosts; and the whole path against
a GitHub Enterprise server that is not github.com.

The gateway (real lifespan and intake, creating real runs of ``deploy/chatops``) hears signed
``status`` and ``check_run`` deliveries and asks the fake GitHub API about the branch; the
runner of ``served_flows`` deploys on the test bed (real git, mvn, sshd hosts running Tomcat).
CI is played by the test: it reports commit statuses through the API, as a CI server does,
and GitHub's deliveries follow. The branch head is what the fake GitHub says it is.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey
from starlette.testclient import TestClient

from adapters import history
from blocks import App
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    connect_fakes,
    gateway,
    post_github,
    wait_for,
)
from tests.green_support import check_run_event, status_event
from tests.shop import save_shop, serving, wait_finished
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost

pytestmark = pytest.mark.e2e

REPO = "acme/shop"
CHANNEL = "C0GREEN001"
REQUIRED = ["ci/build", "ci/test"]


@dataclass
class Green:
    client: TestClient
    hosts: list[TestHost]
    repo: AppRepo
    github: FakeGitHub
    slack: FakeSlack

    def push(self, sha: str) -> None:
        """``main`` is now ``sha`` on GitHub (a push)."""
        self.github.move_branch(REPO, "main", sha)

    def ci_reports(self, sha: str, context: str, state: str, deliveries: int = 2) -> list[dict]:
        """CI posts a commit status through the API; GitHub delivers ``status`` (here, twice:
        GitHub may, and a person may press Redeliver). The gateway's answers."""
        commit = self.github.client(lazy=True).get_repo(REPO).get_commit(sha)
        commit.create_status(state, context=context)
        body = status_event(REPO, sha, context, state, "main")
        answers = [post_github(self.client, body, "status") for _ in range(deliveries)]
        assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
        return [a.json() for a in answers]

    def runs_for(self, sha: str) -> list:
        """The flow runs deploy on green made for ``sha`` (by their idempotency key)."""
        key = f"github-green-shop-staging-{sha}"
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])
                )
            )


@pytest.fixture
def green(
    served_flows: None,
    chatops_home: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> Iterator[Green]:
    with deploying_on_green(deploy_hosts, app_repo, ssh_key, fake_github, fake_slack) as bed:
        yield bed
    assert fake_github.violations == []
    assert fake_slack.violations == []


@contextlib.contextmanager
def deploying_on_green(
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
    clone_url: bool = True,
) -> Iterator[Green]:
    """shop's staging deploying ``main`` on green (without a ``clone_url``: from GitHub's host),
    the gateway up; shop as the other tests know it again afterwards."""
    connect_fakes(app_repo.path, fake_github, fake_slack)
    save_shop(
        app_repo,
        deploy_hosts,
        ssh_key,
        auto_deploy_branch="main",
        auto_deploy_on="green",
        required_contexts=REQUIRED,
        slack_channel=CHANNEL,
    )
    if not clone_url:
        shop = App.load("shop")
        shop.clone_url = None
        shop.save("shop", overwrite=True)
    try:
        with gateway() as client:
            yield Green(client, deploy_hosts, app_repo, fake_github, fake_slack)
    finally:
        save_shop(app_repo, deploy_hosts, ssh_key)


def fresh_commits(repo: AppRepo, count: int) -> list[str]:
    """``count`` new commits, each on the one before, on top of v2 (same files): a deploy on
    green happens once per commit, ever, so each test needs its own. They sit under
    ``refs/green-tests/`` (the mirror fetches every ref), so no branch of the shared repo moves."""
    parent, tree, name = repo.v2, repo.git("rev-parse", f"{repo.v2}^{{tree}}"), uuid.uuid4().hex
    made = []
    for number in range(count):
        parent = repo.git("commit-tree", tree, "-p", parent, "-m", f"green {name} {number}")
        made.append(parent)
    repo.git("update-ref", f"refs/green-tests/{name}", parent)
    return made


@pytest.mark.parametrize("order", [("ci/test", "ci/build"), ("ci/build", "ci/test")])
def test_the_newest_green_head_deploys_once_after_its_second_status_and_nothing_else_does(
    green: Green, order: tuple[str, str]
) -> None:
    older, newer = fresh_commits(green.repo, 2)
    first, second = order
    green.push(older)
    green.ci_reports(older, "ci/build", "success")
    green.push(newer)  # before the older commit's tests finished

    red = green.ci_reports(newer, "ci/test", "failure")
    assert all("shop staging: red: ci/build (missing), ci/test (red)" in a["notes"] for a in red)
    [line] = wait_for(lambda: green.slack.top_level(CHANNEL), 30)
    assert f"shop staging does not deploy main at `{newer[:7]}`" in line.history[-1].text

    early = green.ci_reports(newer, first, "success")  # ci/test: a re-run, fixed
    assert all(a["queued"] == [] for a in early), early
    time.sleep(2)
    assert green.runs_for(newer) == [] and green.github.deployments == []

    then = green.ci_reports(newer, second, "success")
    again = green.ci_reports(newer, first, "success", deliveries=1)
    requests = {q["request"] for a in then + again for q in a["queued"]}
    assert len(requests) == 1, "every later delivery finds the same request"
    [run] = wait_for(lambda: green.runs_for(newer), 60)
    assert wait_finished(run.id).state.is_completed()

    late = green.ci_reports(older, "ci/test", "success")  # the older commit turns green now
    assert all(a["queued"] == [] for a in late)
    assert all(f"{older[:12]} is not the head of main" in " ".join(a["notes"]) for a in late)
    time.sleep(3)

    assert len(green.runs_for(newer)) == 1 and green.runs_for(older) == []
    [deployment] = green.github.deployments
    assert deployment["sha"] == newer
    assert [s["state"] for s in green.github.statuses(deployment["id"])][-1] == "success"
    for host in green.hosts:
        assert newer in serving(host)
    assert len(green.slack.top_level(CHANNEL)) == 2, "the red line and the deploy's card"


def test_a_failing_required_check_run_deploys_nothing(green: Green) -> None:
    [sha] = fresh_commits(green.repo, 1)
    green.push(sha)
    green.github.add_check_run(REPO, sha, "ci/build", "success")
    green.github.add_check_run(REPO, sha, "ci/test", "failure")
    for name, conclusion in (("ci/build", "success"), ("ci/test", "failure")):
        body = check_run_event(REPO, sha, name, conclusion, "main")
        answer = post_github(green.client, body, "check_run").json()
        assert "shop staging: red: ci/test (red)" in answer["notes"]
    time.sleep(3)
    assert green.runs_for(sha) == [] and green.github.deployments == []
    assert [r for r in green.github.requests if r.method != "GET"] == []
    assert len(green.slack.top_level(CHANNEL)) == 1


# --------------------------------------------------------------------------- GitHub Enterprise
@pytest.fixture
def enterprise(
    served_flows: None,
    chatops_home: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> Iterator[Green]:
    """The fake GitHub as an Enterprise server named ``localhost`` (API under /api/v3, git over
    HTTP); shop without a clone_url, so git fetches from the server's host."""
    fake_github.serve_as_enterprise("localhost")
    bed = deploying_on_green(
        deploy_hosts, app_repo, ssh_key, fake_github, fake_slack, clone_url=False
    )
    with bed as green:
        yield green
    assert fake_github.violations == []


def test_on_github_enterprise_every_url_is_the_servers_and_nothing_goes_to_github_com(
    enterprise: Green,
) -> None:
    github, [sha] = enterprise.github, fresh_commits(enterprise.repo, 1)
    web = github.web_url
    assert web.startswith("http://localhost:") and github.url == f"{web}/api/v3"
    enterprise.push(sha)
    enterprise.ci_reports(sha, "ci/build", "success", deliveries=1)
    [answer] = enterprise.ci_reports(sha, "ci/test", "success", deliveries=1)
    assert answer["queued"], answer
    [run] = wait_for(lambda: enterprise.runs_for(sha), 60)
    assert wait_finished(run.id).state.is_completed(), run.state

    for host in enterprise.hosts:
        assert sha in serving(host)
    assert github.git_requests(), "git fetched the code over HTTP from the server"
    [entry] = [
        d for d in history.deployed_everywhere() if (d.app, d.environment) == ("shop", "staging")
    ]
    assert entry.commit_url == f"{web}/acme/shop/commit/{sha}"
    api = {r.path for r in github.requests if r not in github.git_requests()}
    assert {f"/repos/{REPO}/branches/main", f"/repos/{REPO}/deployments"} <= api
    sent = [  # everything the product told GitHub and Slack, and the history page's row
        *(json.dumps(r.json) for r in github.requests if r.method != "GET"),
        *(json.dumps(call.json) for call in enterprise.slack.calls),
        repr(entry),
    ]
    assert any(web in text for text in sent)
    assert not [text for text in sent if "github.com" in text]
