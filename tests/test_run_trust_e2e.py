"""Who a run is for, and the lock, on real parts: the runner of ``served_flows`` deploys to real
sshd hosts; runs are created straight through the Prefect API (as "Run" in the Prefect UI
creates them) or by the gateway (signed), and GitHub and Slack are the fakes.

- A run the gateway did not sign is a UI run: whatever its parameters claim (``via=slack``,
  ``force=true``, someone's name, a GitHub deployment), it is by "prefect-ui", unforced, and
  refused where the environment does not take UI runs. A copy of a signed run is no better.
- A lock holds for everyone but its holder: a forced deploy does not pass it, and a deploy that
  waited for the environment's slot stops when the environment was locked meanwhile.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from starlette.testclient import TestClient

from adapters import history
from adapters.locks import LOCK_TAG, lock_name
from blocks import SlackAccess
from flows.deploy import deploy
from model.locks import Lock
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    BOB,
    DEPLOYS,
    clear_locks,
    deployment_made_on_github,
    gateway,
    post_github,
    post_slack,
    slash_body,
    wait_for,
)
from tests.shop import DEPLOY_PATH, Shop, states, wait_finished
from tests.signed import as_gateway, signed_parameters

pytestmark = pytest.mark.e2e
CAROL = "U0CAROL001"
CLAIMS = {"requested_by": "U0MALLORY1", "via": "slack", "force": True}
"""What a run started in the Prefect UI claims, hoping to be believed."""


def start(parameters: dict, key: str | None = None) -> str:
    """A run of the served ``deploy/chatops`` created through the Prefect API; its id."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("deploy/chatops")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters=parameters, idempotency_key=key
        )
    return str(run.id)


def logs(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
        )
    return "\n".join(log.message for log in found)


def logged(run_id: str, text: str) -> bool:
    """Whether the run's log says ``text`` (logs reach the API a moment after the run ends)."""
    return bool(wait_for(lambda: text in logs(run_id), 20))


def releases(shop: Shop) -> list[list[str]]:
    return [
        sorted(p.name for p in (h.root / "releases").iterdir())
        if (h.root / "releases").exists()
        else []
        for h in shop.hosts
    ]


@pytest.fixture
def no_locks() -> Iterator[None]:
    clear_locks()
    yield
    clear_locks()


def test_a_ui_run_is_refused_where_ui_runs_are_off_whatever_it_claims(
    shop: Shop, served_flows: None
) -> None:
    shop.save_env(allow_ui_runs=False)
    repo = shop.github.client().get_repo("acme/shop")
    made = repo.create_deployment(
        "v1", environment="staging", required_contexts=[], auto_merge=False
    )
    claimed = {"app": "shop", "environment": "staging", "ref": "v1", **CLAIMS}
    anonymous = start({**claimed, "deployment_id": made.id})
    # A copy of parameters the gateway signed, started again without the gateway's request key.
    signed = signed_parameters("deploy", claimed, f"slack-{uuid.uuid4()}")
    copied = start(signed)
    rekeyed = start(signed, key=f"slack-{uuid.uuid4()}")  # under a key of its own choosing

    for run_id in (anonymous, copied, rekeyed):
        run = wait_finished(run_id)
        assert run.state.is_failed()
        message = str(run.state.message)
        assert "shop staging does not take runs started in the Prefect UI" in message
        assert "chatops deploy shop to staging" in message and "/deploy shop" in message
        assert logged(run_id, "Not started by the gateway")
    assert logged(anonymous, "the run has no signature")
    assert logged(copied, "the run has no request key")
    assert logged(rekeyed, "does not match")
    assert releases(shop) == [[], []], "nothing was deployed"
    assert shop.github.statuses(made.id) == [] and len(shop.github.deployments) == 1


def test_where_ui_runs_are_allowed_they_are_by_prefect_ui_and_never_forced(
    shop: Shop, served_flows: None
) -> None:
    assert shop.env.allow_ui_runs is None  # the default for a staging without allow-lists
    shop.github.set_commit_statuses("acme/shop", shop.repo.v2, {"ci/test": "failure"})
    repo = shop.github.client().get_repo("acme/shop")
    claimed_deployment = repo.create_deployment(
        "v1", environment="staging", required_contexts=[], auto_merge=False
    )

    forced = wait_finished(start({"app": "shop", "environment": "staging", "ref": "v2", **CLAIMS}))
    assert forced.state.is_failed() and "ci/test (failure)" in str(forced.state.message)

    done = wait_finished(
        start(
            {
                "app": "shop",
                "environment": "staging",
                "ref": "v1",
                "deployment_id": claimed_deployment.id,
                **CLAIMS,
            }
        )
    )
    assert done.state.is_completed(), done.state.message
    [entry] = [
        d for d in history.deployed_everywhere() if (d.app, d.environment) == ("shop", "staging")
    ]
    assert (entry.sha, entry.requested_by) == (shop.repo.v1, "prefect-ui")
    assert shop.github.statuses(claimed_deployment.id) == [], "its claimed deployment is ignored"
    [recorded] = [d for d in shop.github.deployments if d["id"] != claimed_deployment.id]
    assert states(shop.github, recorded["id"]) == ["in_progress", "success"]
    assert recorded["description"] == "prefect-ui via chatops"


def test_a_run_the_gateway_signed_is_believed(shop: Shop, served_flows: None) -> None:
    shop.save_env(allow_ui_runs=False)
    shop.github.set_commit_statuses("acme/shop", shop.repo.v2, {"ci/test": "failure"})
    key = f"slack-{uuid.uuid4()}"
    asked = {"app": "shop", "environment": "staging", "ref": "v2", **CLAIMS}
    run = wait_finished(start(signed_parameters("deploy", asked, key), key))
    assert run.state.is_completed(), run.state.message
    assert logged(str(run.id), "Signed by the gateway: asked by U0MALLORY1 via slack (forced)")
    [entry] = [
        d for d in history.deployed_everywhere() if (d.app, d.environment) == ("shop", "staging")
    ]
    assert (entry.sha, entry.requested_by) == (shop.repo.v2, "U0MALLORY1")


def test_a_forced_deploy_does_not_pass_a_lock(shop: Shop, no_locks: None) -> None:
    with get_client(sync_client=True) as client:
        lock = Lock("shop", "staging", by=CAROL, message="incident 42", at="", via="slack")
        client.create_variable(
            VariableCreate(name=lock_name("shop", "staging"), value=asdict(lock), tags=[LOCK_TAG])
        )
    state = as_gateway(
        deploy,
        return_state=True,
        app="shop",
        environment="staging",
        ref="v1",
        requested_by=BOB,
        via="slack",
        force=True,
    )
    assert state.is_failed()
    assert f"locked by {CAROL} (slack): incident 42" in str(state.message)
    assert "lock staging on shop steal" in str(state.message)
    assert releases(shop) == [[], []]

    mine = as_gateway(
        deploy, app="shop", environment="staging", ref="v1", requested_by=CAROL, via="slack"
    )
    assert mine.outcome == "success", "the holder deploys"


def hold_restart(shop: Shop, sha: str) -> Path:
    """Make every host's restart of ``sha`` wait until the returned file exists on it."""
    gate = "held-restart-go"
    for host in shop.hosts:
        host.run(
            f"cp {DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}/bin/real-restart && printf "
            f"'#!/bin/sh\\nif grep -q {sha} {DEPLOY_PATH}/current/REVISION; then "
            f"while [ ! -e {DEPLOY_PATH}/{gate} ]; do sleep 0.2; done; fi\\n"
            f'exec {DEPLOY_PATH}/bin/real-restart "$@"\\n\' > {DEPLOY_PATH}/bin/restart-tomcat',
            check=True,
        )
    return Path(gate)


@pytest.fixture
def front(
    shop: Shop, served_flows: None, fake_slack: FakeSlack, no_locks: None
) -> Iterator[TestClient]:
    SlackAccess(bot_token=fake_slack.token, api_url=fake_slack.api_url).save(
        "default", overwrite=True
    )
    try:
        with gateway() as client:
            yield client
    finally:
        SlackAccess.delete("default")
    assert fake_slack.violations == []


def slash(client: TestClient, fake_slack: FakeSlack, text: str, user: str) -> dict:
    url = fake_slack.response_url(f"r{time.time_ns()}")
    return post_slack(client, "/slack/commands", slash_body(text, url, user, DEPLOYS)).json()


def switched(shop: Shop, run_id: str) -> object:
    """True once the first host has switched to the run's release; the run's logs if it ended."""
    if (shop.hosts[0].root / "current").exists():
        return True
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    return logs(run_id)[-3000:] if run.state and run.state.is_final() else False


def ticket_run(client: TestClient, request_id: int) -> str:
    store = client.app.state.intake.store
    return wait_for(lambda: store.ticket(request_id).run_id, 60)


def test_a_deploy_queued_behind_another_stops_when_the_environment_is_locked_meanwhile(
    shop: Shop, front: TestClient, fake_slack: FakeSlack
) -> None:
    github: FakeGitHub = shop.github
    shop.save_env(command_timeout=240)  # the first deploy's restart is held meanwhile
    gate = hold_restart(shop, shop.repo.v1)
    try:
        first = slash(front, fake_slack, "shop@v1 to staging", ALICE)
        assert first["response_type"] == "in_channel", first
        first_run = first["text"].split("/runs/flow-run/")[1].split("|")[0]
        held = wait_for(lambda: switched(shop, first_run), 300)  # its restart is held
        assert held is True, held

        # Queued behind it: Bob from Slack and a deployment created on GitHub.
        second = slash(front, fake_slack, "shop@v2 to staging", BOB)
        assert second["response_type"] == "in_channel", second
        second_run = second["text"].split("/runs/flow-run/")[1].split("|")[0]
        made, body = deployment_made_on_github(github, "v2", "from GitHub")
        answer = post_github(front, body, "deployment")
        assert answer.status_code == 202, answer.text
        third_run = ticket_run(front, answer.json()["queued"][0]["request"])
        for run_id in (second_run, third_run):
            wait_for(lambda run_id=run_id: "waiting for it" in logs(run_id), 120)

        locked = slash(front, fake_slack, "lock staging on shop: incident 42", CAROL)
        assert f"<@{CAROL}> locked *staging* on *shop*: incident 42" in locked["text"]
    finally:
        for host in shop.hosts:
            (host.root / gate).touch()

    assert wait_finished(first_run).state.is_completed()
    for run_id in (second_run, third_run):
        run = wait_finished(run_id)
        assert run.state.is_failed()
        message = str(run.state.message)
        assert f"locked by {CAROL} (slack)" in message and "incident 42" in message
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host), "the queued deploys changed nothing"
    assert {name.split("-")[-1] for names in releases(shop) for name in names} == {shop.repo.v1[:7]}

    github_states = wait_for(lambda: github.statuses(made.id), 30)
    assert github_states[-1]["state"] == "failure"
    assert "locked by" in github_states[-1]["description"]
    cards = fake_slack.top_level(DEPLOYS)
    bobs = [c for c in cards if "shop@v2" in c.text]
    assert bobs and "failure" in bobs[-1].text
    excerpt = " ".join(r.text for r in fake_slack.replies(DEPLOYS, bobs[-1].ts))
    assert f"locked by {CAROL}" in excerpt and "incident 42" in excerpt
