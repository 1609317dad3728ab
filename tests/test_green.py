"""Deploy on green through the gateway: what CI's webhooks start, and what they never start.

The gateway runs with its real lifespan against the test Prefect server (configuration blocks,
intake); GitHub is the fake GitHub API (branch heads, protection, statuses and check runs as CI
reports them), Slack the fake Slack Web API. Runs are recorded by a ``RecordingCreator``: that
they deploy what they name is the end-to-end tests' business (test_green_e2e.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from blocks import App, Environment, GitHubAccess, SlackAccess
from chatops import config
from chatops.config import ConfigError
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import RecordingCreator, gateway, post_github, wait_for, webhook_fixture
from tests.green_support import (
    check_run_event,
    check_suite_event,
    schema_problems,
    status_event,
)
from tests.test_config import SECRETS

REPO = "acme/green"
OLD, NEW = "1" * 40, "2" * 40
CHANNEL = "C0GREEN001"


@pytest.fixture(scope="module")
def green_app(prefect_server: None) -> Iterator[None]:
    """The app ``green`` on acme/green, for the module: staging deploys main on green with two
    required statuses (and announces in CHANNEL), qa deploys main on green with GitHub's
    required checks, dev deploys each push to main. No test changes it."""
    App(repository=REPO, environments=["staging", "qa", "dev"]).save("green", overwrite=True)
    common = dict(ssh_private_key="k", deploy_path="/srv/app", restart_command="true")
    Environment(
        hosts=["g-1"],
        auto_deploy_branch="main",
        required_contexts=["ci/build", "ci/test"],
        slack_channel=CHANNEL,
        **common,
    ).save("green-staging", overwrite=True)
    Environment(hosts=["g-2"], auto_deploy_branch="main", auto_deploy_on="green", **common).save(
        "green-qa", overwrite=True
    )
    Environment(hosts=["g-3"], auto_deploy_branch="main", **common).save(
        "green-dev", overwrite=True
    )
    yield
    for name in ("green-staging", "green-qa", "green-dev"):
        Environment.delete(name)
    App.delete("green")


@pytest.fixture
def github(green_app: None, fake_github: FakeGitHub) -> Iterator[FakeGitHub]:
    """acme/green on this test's fake GitHub, its main at NEW."""
    fake_github.add_repo(REPO, refs={"main": NEW})
    GitHubAccess(token=fake_github.token, api_url=fake_github.url).save("default", overwrite=True)
    try:
        yield fake_github
    finally:
        GitHubAccess.delete("default")
    assert fake_github.violations == []


@pytest.fixture
def slack(prefect_server: None, fake_slack: FakeSlack) -> Iterator[FakeSlack]:
    SlackAccess(bot_token=fake_slack.token, api_url=fake_slack.api_url).save(
        "default", overwrite=True
    )
    try:
        yield fake_slack
    finally:
        SlackAccess.delete("default")


@pytest.fixture
def starter() -> RecordingCreator:
    return RecordingCreator()


@pytest.fixture
def client(github: FakeGitHub, slack: FakeSlack, starter: RecordingCreator) -> Iterator[TestClient]:
    with gateway(starter) as test_client:
        yield test_client


def ci_reports(github: FakeGitHub, sha: str, context: str, state: str) -> None:
    """CI posts a commit status, as a CI server does (through the API)."""
    repo = github.client(lazy=True).get_repo(REPO)
    repo.get_commit(sha).create_status(state, context=context)


def status(client: TestClient, sha: str, context: str, state: str) -> dict:
    response = post_github(client, status_event(REPO, sha, context, state, "main"), "status")
    assert response.status_code in (200, 202), response.text
    return response.json()


def staging_queued(answer: dict) -> list[int]:
    """The requests an answer stored for green's staging (qa may deploy on any green)."""
    return [q["request"] for q in answer["queued"] if q["title"].endswith("→ staging")]


def staging_runs(starter: RecordingCreator) -> list:
    return [r for r in starter.runs if r.parameters["environment"] == "staging"]


def test_the_webhooks_we_send_match_octokits_schemas() -> None:
    assert schema_problems("status", status_event(REPO, NEW, "ci/test", "failure", "main")) == []
    assert schema_problems("check_run", check_run_event(REPO, NEW, "lint", "success", "main")) == []
    assert schema_problems("check_suite", check_suite_event(REPO, NEW, "success", "main")) == []


@pytest.mark.parametrize("order", [("ci/build", "ci/test"), ("ci/test", "ci/build")])
def test_two_required_statuses_in_either_order_twice_each_deploy_once_after_the_second(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator, order: tuple[str, str]
) -> None:
    first, second = order
    ci_reports(github, NEW, first, "success")
    for _ in range(2):
        answer = status(client, NEW, first, "success")
        assert staging_queued(answer) == [], answer
        assert f"green staging: waiting for {second} (missing)" in answer["notes"]
    time.sleep(0.3)
    assert staging_runs(starter) == []

    ci_reports(github, NEW, second, "success")
    answers = [status(client, NEW, context, "success") for context in (second, first, second)]

    [run] = wait_for(lambda: staging_runs(starter))
    assert [len(staging_queued(a)) for a in answers] == [1, 1, 1]
    assert len({staging_queued(a)[0] for a in answers}) == 1, "the same request each time"
    assert run.key == f"github-green-green-staging-{NEW}"
    assert run.parameters["ref"] == "main" and run.parameters["sha"] == NEW
    assert run.parameters["via"] == "github"
    assert run.parameters["notify"] == {"channel": CHANNEL}
    time.sleep(0.3)
    assert len(staging_runs(starter)) == 1


def test_a_failing_required_status_deploys_nothing_and_says_so_once_in_the_channel(
    client: TestClient, github: FakeGitHub, slack: FakeSlack, starter: RecordingCreator
) -> None:
    ci_reports(github, NEW, "ci/build", "success")
    ci_reports(github, NEW, "ci/test", "failure")
    for context, state in [("ci/test", "failure"), ("ci/build", "success"), ("ci/test", "failure")]:
        answer = status(client, NEW, context, state)
        assert "green staging: red: ci/test (red)" in answer["notes"]
    [line] = wait_for(lambda: slack.top_level(CHANNEL))
    assert "green staging does not deploy main at" in line.history[-1].text
    assert NEW[:7] in line.history[-1].text and "ci/test" in line.history[-1].text
    time.sleep(0.5)
    assert len(slack.top_level(CHANNEL)) == 1
    assert staging_runs(starter) == []
    assert [r for r in github.requests if r.method != "GET" and "/statuses/" not in r.path] == []
    posted = [r for r in github.requests if r.method == "POST"]
    assert all(r.path == f"/repos/{REPO}/statuses/{NEW}" for r in posted), "ours only"


def test_a_commit_that_is_not_the_branch_head_never_deploys(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    github.set_commit_statuses(REPO, OLD, {"ci/build": "success", "ci/test": "success"})
    answer = status(client, OLD, "ci/test", "success")
    assert answer["queued"] == [], "neither staging nor qa"
    assert f"green staging: {OLD[:12]} is not the head of main ({NEW[:12]})" in " ".join(
        answer["notes"]
    )
    time.sleep(0.3)
    assert starter.runs == []


def test_without_a_list_the_branch_protection_says_which_checks_and_check_runs_count(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    github.protect_branch(REPO, "main", ["build", "lint"])
    github.add_check_run(REPO, NEW, "build", "success")
    github.add_check_run(REPO, NEW, "lint", "failure")
    github.add_check_run(REPO, NEW, "lint", None, status="in_progress")  # re-run
    body = check_run_event(REPO, NEW, "build", "success", "main")
    answer = post_github(client, body, "check_run").json()
    assert "green qa: waiting for lint (pending)" in answer["notes"]

    github.add_check_run(REPO, NEW, "lint", "success")
    suite = post_github(client, check_suite_event(REPO, NEW, "success", "main"), "check_suite")
    assert suite.status_code == 202, suite.text
    [run] = wait_for(lambda: [r for r in starter.runs if r.parameters["environment"] == "qa"])
    assert run.key == f"github-green-green-qa-{NEW}"


def test_when_github_cannot_be_asked_the_delivery_is_answered_503_and_the_next_one_deploys(
    client: TestClient,
    github: FakeGitHub,
    starter: RecordingCreator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("adapters.github.RETRY_BACKOFF_SECONDS", 0.01)  # the tries, not the pauses
    github.set_commit_statuses(REPO, NEW, {"ci/build": "success", "ci/test": "success"})
    github.fail_next("GET", r"/branches/main$", 502, times=4)  # past the client's 3 retries
    failed = post_github(client, status_event(REPO, NEW, "ci/test", "success", "main"), "status")
    assert failed.status_code == 503
    said = failed.json()["error"]
    assert said.startswith("GitHub could not be reached: ") and "502" in said, said
    assert github.token not in said
    time.sleep(0.3)
    assert starter.runs == []

    assert status(client, NEW, "ci/test", "success")["queued"]
    assert wait_for(lambda: staging_runs(starter))


def test_a_check_run_still_running_or_a_suite_just_requested_changes_nothing(
    client: TestClient, starter: RecordingCreator
) -> None:
    created = json.loads(check_run_event(REPO, NEW, "build", "success", "main"))
    created["action"] = "created"
    answer = post_github(client, json.dumps(created).encode(), "check_run")
    assert answer.json() == {"ignored": "check_run action 'created' is not used"}
    assert starter.runs == []


def test_a_push_to_a_branch_that_deploys_on_green_starts_nothing_there(
    client: TestClient, starter: RecordingCreator
) -> None:
    push = json.loads(webhook_fixture("push.with-new-branch"))
    push["repository"]["full_name"] = REPO
    push.update(ref="refs/heads/main", after=NEW)
    response = post_github(client, json.dumps(push).encode(), "push")
    assert response.status_code == 202
    [run] = wait_for(lambda: starter.runs)
    assert run.parameters["environment"] == "dev", "dev deploys on push; staging and qa do not"
    time.sleep(0.3)
    assert len(starter.runs) == 1


def test_hostile_or_foreign_status_payloads_start_nothing(
    client: TestClient, starter: RecordingCreator
) -> None:
    bad_sha = status_event(REPO, "f95f852; rm -rf /", "ci/test", "success", "main")
    assert post_github(client, bad_sha, "status").status_code == 422
    foreign = status_event("someone/else", NEW, "ci/test", "success", "main")
    assert (
        "no environment of someone/else deploys on green"
        in post_github(client, foreign, "status").json()["ignored"]
    )
    assert starter.runs == []


# --------------------------------------------------------------------------- the file
def write(tmp_path: Path, environment: dict) -> Path:
    data = {
        "apps": {
            "shop": {
                "repository": "acme/shop",
                "environments": {
                    "staging": {
                        "hosts": ["web-1"],
                        "ssh": {"private_key_env": "KEY"},
                        "deploy_path": "/srv/shop",
                        "restart_command": "true",
                        **environment,
                    }
                },
            }
        }
    }
    path = tmp_path / "chatops.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def staging(path: Path) -> Environment:
    return config.build_blocks(path, config.load(path), {"KEY": "k"})[
        "chatops-environment/shop-staging"
    ]


def test_the_file_says_which_branch_deploys_and_when(tmp_path: Path) -> None:
    path = write(tmp_path, {"auto_deploy": {"branch": "main", "on": "green"}})
    quoted = path.read_text()
    assert "'on': green" in quoted
    path.write_text(quoted.replace("'on': green", "on: green"))  # YAML reads a bare on as true
    env = staging(path)
    assert (env.auto_deploy_branch, env.auto_deploy_on, env.auto_deploys_on()) == (
        "main",
        "green",
        "green",
    )
    pushed = staging(write(tmp_path, {"auto_deploy": {"branch": "main", "on": "push"}}))
    assert pushed.auto_deploys_on() == "push"


def test_the_example_file_deploys_staging_on_green() -> None:
    example = Path(__file__).parents[1] / "examples" / "chatops.yaml"
    blocks = config.build_blocks(example, config.load(example), SECRETS)
    env = blocks["chatops-environment/shop-staging"]
    assert (env.auto_deploy_branch, env.auto_deploys_on(), env.slack_channel) == (
        "main",
        "green",
        "C2147483705",
    )
    assert blocks["chatops-environment/shop-production"].auto_deploys_on() is None


def test_the_older_spelling_still_works_and_checks_make_green_the_default(
    tmp_path: Path,
) -> None:
    assert staging(write(tmp_path, {"auto_deploy_branch": "main"})).auto_deploys_on() == "push"
    checked = {"auto_deploy": {"branch": "main"}, "required_contexts": ["ci/test"]}
    assert staging(write(tmp_path, checked)).auto_deploys_on() == "green"
    assert staging(write(tmp_path, {})).auto_deploys_on() is None


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"auto_deploy": {"branch": "main", "on": "merge"}}, "auto_deploy.on"),
        ({"auto_deploy": {"on": "green"}}, "auto_deploy.branch"),
        (
            {"auto_deploy": {"branch": "main"}, "auto_deploy_branch": "main"},
            "auto_deploy and auto_deploy_branch both name a branch",
        ),
    ],
)
def test_a_wrong_auto_deploy_names_the_key(
    tmp_path: Path, environment: dict, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        staging(write(tmp_path, environment))
    assert expected in str(error.value) and "shop" in str(error.value)
