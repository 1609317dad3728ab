"""Confirmation before deploys to a ``confirm: true`` environment, at the gateway: who may answer
the question, what a click starts, what a terminal without a TTY gets, who is never asked.

Runs are recorded (``RecordingCreator``); the end-to-end tests with the dry run and real hosts
are in test_confirm_e2e.py.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from starlette.testclient import TestClient

from blocks import App, Environment
from chatops.confirm import VALID_SECONDS, ask_value, read_value
from chatops.grammar import Command
from chatops.request import Request, Requester
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    BOB,
    DEPLOYS,
    RecordingCreator,
    action_body,
    deployment_event,
    gateway,
    post_cli,
    post_github,
    post_slack,
    wait_for,
)

APP = "vault"


@pytest.fixture(scope="module")
def vault(prefect_server: None) -> Iterator[None]:
    """An app whose production asks first, and whose staging does not."""
    App(repository="acme/vault", environments=["production", "staging"]).save(APP, overwrite=True)
    for name, confirm in (("production", True), ("staging", False)):
        Environment(
            hosts=["vault-1"],
            ssh_private_key="not-a-real-key",
            deploy_path="/srv/app",
            restart_command="true",
            confirm=confirm,
        ).save(f"{APP}-{name}", overwrite=True)
    yield
    with get_client(sync_client=True) as client:
        for name in (f"chatops-app/{APP}", f"chatops-environment/{APP}-production"):
            slug, block = name.split("/")
            client.delete_block_document(client.read_block_document_by_name(block, slug).id)
        staging = client.read_block_document_by_name(f"{APP}-staging", "chatops-environment")
        client.delete_block_document(staging.id)


@pytest.fixture
def starter() -> RecordingCreator:
    return RecordingCreator()


@pytest.fixture
def client(vault: None, starter: RecordingCreator) -> Iterator[TestClient]:
    with gateway(starter) as test_client:
        yield test_client


def question(user: str = ALICE, ref: str = "v2", key: str | None = None) -> str:
    """The value of the buttons under the question the gateway asks ``user``."""
    command = Command("deploy", APP, ref=ref, environment="production")
    return ask_value(
        Request(Requester("slack", user, DEPLOYS), command, key or f"k-{time.time_ns()}")
    )


def click(client: TestClient, slack: FakeSlack, action: str, value: str, user: str = ALICE) -> dict:
    name = f"click-{time.time_ns()}"
    body = action_body(action, value, slack.response_url(name), user)
    response = post_slack(client, "/slack/interactions", body)
    assert response.status_code == 200
    [answer] = wait_for(lambda: slack.responses(name), 30)
    return answer


def test_only_the_requesters_deploy_click_starts_the_run_once(
    client: TestClient, starter: RecordingCreator, fake_slack: FakeSlack
) -> None:
    value = question(ALICE)

    refused = click(client, fake_slack, "confirm_deploy", value, user=BOB)
    assert refused["response_type"] == "ephemeral"
    assert refused["text"].startswith(f":no_entry: Only <@{ALICE}> can answer this question")
    assert refused.get("replace_original") is not True
    assert starter.runs == []

    started = click(client, fake_slack, "confirm_deploy", value)
    assert f"<@{ALICE}> is deploying *vault@v2 → production*" in started["text"]
    assert started["response_type"] == "in_channel" and started["replace_original"] is True
    click(client, fake_slack, "confirm_deploy", value)  # clicked twice: still one run
    [run] = starter.runs
    assert (run.parameters["requested_by"], run.parameters["via"]) == (ALICE, "slack")
    assert run.parameters["ref"] == "v2"

    too_late = click(client, fake_slack, "cancel_deploy", value)
    assert too_late["text"].startswith("Too late to cancel: it was confirmed already")
    assert len(starter.runs) == 1
    assert fake_slack.violations == []


def test_cancel_spends_the_question_a_deploy_click_after_it_starts_nothing(
    client: TestClient, starter: RecordingCreator, fake_slack: FakeSlack
) -> None:
    value = question(ALICE)
    assert click(client, fake_slack, "cancel_deploy", value, user=BOB)["text"].startswith(
        ":no_entry: Only"
    )
    cancelled = click(client, fake_slack, "cancel_deploy", value)
    assert cancelled["text"] == (
        f":no_entry_sign: <@{ALICE}> cancelled the deploy of *vault@v2 to production*; "
        "nothing was started."
    )
    assert cancelled["replace_original"] is True

    after = click(client, fake_slack, "confirm_deploy", value)
    assert after["text"].startswith("Could not start *vault@v2 to production*: Cancelled by")
    assert starter.runs == []
    assert fake_slack.violations == []


def test_a_made_up_changed_or_expired_question_starts_nothing(
    client: TestClient, starter: RecordingCreator, fake_slack: FakeSlack
) -> None:
    body, mac = question(BOB, ref="v1").split(".")
    data = json.loads(base64.urlsafe_b64decode(body))
    changed = base64.urlsafe_b64encode(json.dumps({**data, "ref": "evil"}).encode()).decode()
    for forged in (f"{changed}.{mac}", body, "", json.dumps({"app": APP})):
        answer = click(client, fake_slack, "confirm_deploy", forged, user=BOB)
        assert answer["text"] == "This button's data is not valid (not signed by chatops).", forged
    command = Command("deploy", APP, ref="v1", environment="production")
    old = ask_value(Request(Requester("slack", BOB, DEPLOYS), command, "k-old"), now=0)
    expired = click(client, fake_slack, "confirm_deploy", old, user=BOB)
    assert expired["text"].startswith("This question expired")
    assert starter.runs == []


def test_a_question_is_answered_within_its_time() -> None:
    command = Command("deploy", APP, ref="v1", environment="production", hosts=["vault-1"])
    asked = Request(Requester("slack", ALICE, DEPLOYS), command, "slack-123")
    value = ask_value(asked, now=1000)
    assert read_value(value, now=1000 + VALID_SECONDS) == asked
    with pytest.raises(Exception, match="expired"):
        read_value(value, now=1001 + VALID_SECONDS)


def test_a_terminal_that_cannot_ask_is_told_to_say_yes_and_nothing_starts(
    client: TestClient, starter: RecordingCreator
) -> None:
    answer = post_cli(client, "deploy vault@v2 to production").json()
    assert answer["ok"] is False
    assert answer["text"] == (
        ":raised_hand: Deploys of *vault* to *production* are confirmed first, and there is no "
        "terminal to ask on: run `chatops deploy vault@v2 to production --yes` (see what it "
        "would change with `chatops noop vault@v2 to production`). Nothing was started."
    )
    assert starter.runs == []

    yes = post_cli(client, "deploy vault@v2 to production", yes=True).json()
    assert yes["ok"] is True and "alice is deploying *vault@v2 → production*" in yes["text"]
    assert [run.parameters["via"] for run in starter.runs] == ["cli"]


def test_rollbacks_and_environments_without_confirm_are_not_asked(
    client: TestClient, starter: RecordingCreator
) -> None:
    rollback = post_cli(client, "rollback vault in production").json()
    assert rollback["ok"] is True and "is rolling back" in rollback["text"]
    staging = post_cli(client, "deploy vault to staging").json()
    assert staging["ok"] is True and "is deploying" in staging["text"]
    assert [run.deployment for run in starter.runs] == ["rollback/chatops", "deploy/chatops"]


def test_a_github_deployment_is_not_asked(client: TestClient, starter: RecordingCreator) -> None:
    body = deployment_event(repository="acme/vault", environment="production", id=4242)
    response = post_github(client, body, "deployment")
    assert response.status_code == 202, response.text
    wait_for(lambda: starter.runs)
    [run] = starter.runs
    assert (run.parameters["via"], run.parameters["deployment_id"]) == ("github", 4242)
