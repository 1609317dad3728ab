"""The HTTP gateway as GitHub sees it: deployment, push and other webhooks (octokit's example
payloads, signed as GitHub signs them), the status code and deployment statuses GitHub gets back,
and the runs they start, recorded by a ``RecordingCreator`` (see tests/test_gateway.py).
"""

from __future__ import annotations

import json
import time

import pytest
from starlette.testclient import TestClient

from adapters.run_signing import claims, problem, signing_key
from tests.gateway_support import (
    ALICE,
    BOB,
    BOSS,
    Chat,
    RecordingCreator,
    deployment_event,
    deployment_on_fake_github,
    gateway,
    post_cli,
    post_github,
    signed_by_the_gateway,
    wait_for,
    webhook_fixture,
)

pytestmark = pytest.mark.usefixtures("no_locks")  # tests/gateway_fixtures.py


# --------------------------------------------------------------------------- GitHub
def test_ping_is_answered_without_side_effects(
    client: TestClient, starter: RecordingCreator
) -> None:
    response = post_github(client, webhook_fixture("ping"), "ping")
    assert response.status_code == 200 and response.json() == {"pong": True}
    assert starter.runs == []


def test_octokit_deployment_starts_a_deploy_attached_to_that_deployment(
    client: TestClient, starter: RecordingCreator
) -> None:
    response = post_github(client, webhook_fixture("deployment"), "deployment")
    assert response.status_code == 202
    [queued] = response.json()["queued"]
    assert queued["title"] == "hello@master (f95f852) → production"
    [request] = wait_for(lambda: starter.runs)
    assert signed_by_the_gateway("deploy", request) == {
        "app": "hello",
        "environment": "production",
        "ref": "master",
        "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        "deployment_id": 145988746,
        "requested_by": "Codertocat",
        "via": "github",
        "force": False,
        "hosts": None,
        "task": "deploy",
        "notify": None,
    }
    assert request.key == "github-deployment-145988746"
    assert request.title == "hello@master (f95f852) → production"


def test_deployment_task_is_used_when_the_app_knows_it(
    client: TestClient, starter: RecordingCreator
) -> None:
    for number, task in enumerate(("deploy:migrate", "migrate", "deploy")):
        body = deployment_event(
            repository="acme/shop", environment="staging", task=task, id=1000 + number
        )
        assert post_github(client, body, "deployment").status_code == 202
    wait_for(lambda: len(starter.runs) == 3)
    assert [p["task"] for p in starter.parameters] == ["migrate", "migrate", "deploy"]


@pytest.mark.parametrize("task", ["deploy:lock", "deploy:migrations", "something"])
def test_a_deployment_task_the_app_lacks_gets_an_error_status_and_deploys_nothing(
    client: TestClient, starter: RecordingCreator, fake_github, task: str
) -> None:
    with deployment_on_fake_github(fake_github, "acme/shop", "main", "staging") as made:
        body = deployment_event(
            repository="acme/shop", environment="staging", task=task, id=made.id, sha=made.sha
        )
        response = post_github(client, body, "deployment")
        assert response.status_code == 422
        assert f"shop has no task '{task}'" in response.json()["error"]
        states = wait_for(lambda: fake_github.statuses(made.id))
        assert [s["state"] for s in states] == ["error"]
        assert "has no task" in states[0]["description"] and "migrate" in states[0]["description"]
        assert fake_github.violations == []
    time.sleep(0.3)
    assert starter.runs == []


@pytest.mark.parametrize(
    "payload", [{"chatops": {"flow_run_id": "x"}}, '{"chatops": {"requested_by": "U1"}}']
)
def test_deployments_chatops_created_itself_are_ignored(
    client: TestClient, starter: RecordingCreator, payload: object
) -> None:
    body = deployment_event(payload=payload)
    response = post_github(client, body, "deployment")
    assert response.status_code == 200
    assert "created by chatops" in response.json()["ignored"]
    assert starter.runs == []


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"ref": "$(reboot)"}, 422),
        ({"ref": "main..evil"}, 422),
        ({"ref": "-x"}, 422),
        ({"sha": "f95f852b; rm -rf /"}, 422),
        ({"sha": "f95f852"}, 422),
        ({"sha": "F95F852BD8FCA8FCC58A9A2D6C842781E32A215E"}, 422),
        ({"environment": "../production"}, 422),
        ({"environment": "prod\nuction"}, 422),
        ({"id": "145988746"}, 400),
        ({"id": True}, 400),
        ({"id": -1}, 400),
    ],
)
def test_hostile_deployment_payloads_are_refused(
    client: TestClient, starter: RecordingCreator, changes: dict, status: int
) -> None:
    response = post_github(client, deployment_event(**changes), "deployment")
    assert response.status_code == status
    assert starter.runs == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"repository": "someone/else"}, "repository someone/else is not configured"),
        ({"environment": "qa"}, "no app of Codertocat/Hello-World has an environment 'qa'"),
    ],
)
def test_deployments_outside_the_configuration_are_ignored(
    client: TestClient, starter: RecordingCreator, changes: dict, reason: str
) -> None:
    response = post_github(client, deployment_event(**changes), "deployment")
    assert response.status_code == 200 and response.json() == {"ignored": reason}
    assert starter.runs == []


def test_push_to_an_auto_deploy_branch_deploys_the_pushed_commit(
    client: TestClient, starter: RecordingCreator
) -> None:
    response = post_github(
        client,
        webhook_fixture("push.with-new-branch"),
        "push",
        delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
    )
    assert response.status_code == 202
    [request] = wait_for(lambda: starter.runs)
    assert request.parameters["app"] == "hello"
    assert request.parameters["environment"] == "staging"
    assert request.parameters["ref"] == "master"
    assert request.parameters["sha"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert request.parameters["requested_by"] == "Codertocat"
    assert request.key == ("github-push-72d3162e-cc78-11e3-81ab-4c9367dc0958-hello-staging")


def test_tag_pushes_and_deletions_never_deploy(
    client: TestClient, starter: RecordingCreator
) -> None:
    tag_deletion = webhook_fixture("push")
    assert post_github(client, tag_deletion, "push").json() == {
        "ignored": "only branch pushes deploy"
    }
    branch = json.loads(webhook_fixture("push.with-new-branch"))
    for changes in (
        {"deleted": True},
        {"after": "0" * 40},
        {"ref": "refs/tags/master"},
        {"ref": "refs/heads/other"},
    ):
        body = json.dumps({**branch, **changes}).encode()
        response = post_github(client, body, "push")
        assert response.status_code == 200 and "ignored" in response.json(), changes
    assert starter.runs == []


@pytest.mark.parametrize("name", ["deployment_status", "status", "check_suite.completed"])
def test_events_we_do_not_use_are_acknowledged_and_ignored(
    client: TestClient, starter: RecordingCreator, name: str
) -> None:
    event = name.split(".")[0]
    response = post_github(client, webhook_fixture(name), event)
    assert response.status_code == 200
    unused = f"{event} events are not used"
    no_green = "no environment of Codertocat/Hello-World deploys on green"  # it deploys on push
    assert response.json() == {"ignored": unused if event == "deployment_status" else no_green}
    assert post_github(client, b"{}", "made_up_event").status_code == 200
    assert starter.runs == []


def test_a_frozen_environment_refuses_every_deploy_but_not_a_rollback(
    chat: Chat, starter: RecordingCreator
) -> None:
    barred = chat.command("freeze production", user=BOB)["text"]
    assert "You may not deploy to *production* of shop" in barred  # shop's is BOSS's alone
    assert "No app has an environment named *nowhere*" in chat.command("freeze nowhere")["text"]
    frozen = chat.command("freeze production: release week", user=BOSS)
    assert frozen["response_type"] == "in_channel", frozen["text"]
    assert f"<@{BOSS}> froze *production*: release week" in frozen["text"]

    slack = chat.command("hello to production", user=BOB)["text"]
    assert f"*production* is frozen by <@{BOSS}>" in slack and "release week" in slack
    assert "`unfreeze production`" in slack and "`rollback hello in production`" in slack
    assert "is frozen by" in chat.command("hello to production!", user=BOSS)["text"]
    cli = post_cli(chat.client, "deploy billing to production", user="carol").json()
    assert "is frozen by" in cli["text"] and "release week" in cli["text"]
    response = post_github(chat.client, webhook_fixture("deployment"), "deployment")
    assert response.status_code == 409
    assert "is frozen by" in response.json()["refused"][0]["refused"]
    assert "is frozen by" in chat.command("check production on hello", user=BOSS)["text"]
    assert starter.runs == []

    rollback = chat.command("rollback hello in production", user=BOSS)["text"]
    assert "frozen" not in rollback and "hello@previous release → production" in rollback
    wait_for(lambda: starter.runs, seconds=10)
    assert [run.deployment for run in starter.runs] == ["rollback/chatops"]
    assert "is frozen by" in chat.command("status hello")["text"]

    assert "may not freeze or unfreeze" in chat.command("unfreeze production", user=BOB)["text"]
    assert "unfroze *production*" in chat.command("unfreeze production", user=BOSS)["text"]
    assert chat.command("hello to production", user=BOSS)["response_type"] == "in_channel"
    assert "was not frozen" in chat.command("unfreeze production", user=BOSS)["text"]


def test_a_dry_run_is_for_who_may_deploy_and_is_not_stopped_by_a_lock(
    chat: Chat, starter: RecordingCreator
) -> None:
    refused = chat.command("noop shop to production", user=BOB)["text"]
    assert "You may not deploy *shop* to *production*" in refused
    chat.command("lock staging on shop: QA")
    chat.command("noop shop@v2 to staging/web-1", user=BOB, patient=False)
    [run] = wait_for(lambda: starter.runs, seconds=10)
    assert run.deployment == "noop/chatops" and run.title == "noop shop@v2 → staging"
    assert run.parameters["requested_by"] == BOB and run.parameters["hosts"] == ["web-1"]
    values = claims("noop", run.parameters, run.key)
    assert problem(values, run.parameters["signature"], signing_key(False)) is None
    assert "deployment_id" not in run.parameters and "force" not in run.parameters


def test_a_locked_environment_refuses_github_deploys(chat: Chat, starter: RecordingCreator) -> None:
    chat.command("lock production on hello: audit")
    response = post_github(chat.client, webhook_fixture("deployment"), "deployment")
    assert response.status_code == 409
    [refused] = response.json()["refused"]
    # in plain words: GitHub shows the answer to its delivery as it is, no Slack markup
    assert f"production on hello is locked by @{ALICE}" in refused["refused"]
    assert "audit" in refused["refused"] and "<@" not in refused["refused"]
    time.sleep(0.3)
    assert starter.runs == []


def test_webhooks_are_answered_at_once_when_prefect_is_slow() -> None:
    slow = RecordingCreator(delay=1.0)  # twice the bound below
    with gateway(slow) as client:
        started = time.monotonic()
        response = post_github(client, webhook_fixture("deployment"), "deployment")
        assert time.monotonic() - started < 0.5
        assert response.status_code == 202
        [queued] = response.json()["queued"]
        assert queued["title"] == "hello@master (f95f852) → production"
        assert queued["state"] == "queued"
        wait_for(lambda: slow.runs, seconds=10)
