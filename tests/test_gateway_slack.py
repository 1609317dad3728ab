"""The HTTP gateway as Slack sees it: slash commands (deploy, locks, status) and button clicks,
what each user gets back and what (if anything) starts.

The app runs with its real lifespan against the test Prefect server (configuration, locks and
history are real); creating runs is recorded by a ``RecordingCreator``.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
)
from prefect.states import Cancelled, Running
from starlette.testclient import TestClient

from adapters import history
from chatops.gateway import SLOW_NOTE
from flows.deploy import deploy
from model.summary import PREVIOUS, DeploySummary, Step, run_tags
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    BOB,
    BOSS,
    DEPLOYS,
    RANDOM,
    SETTINGS,
    Chat,
    RecordingCreator,
    action_body,
    gateway,
    post_slack,
    signed_by_the_gateway,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("no_locks")  # tests/gateway_fixtures.py


# --------------------------------------------------------------------------- slash: deploy
def test_deploy_starts_a_run_with_the_flow_parameters_and_links_it(
    chat: Chat, starter: RecordingCreator
) -> None:
    reply = chat.command("shop@feature/login to staging/web-2")
    assert reply["response_type"] == "in_channel"
    assert reply["text"].startswith(f"<@{ALICE}> is deploying *shop@feature/login → staging*")
    assert "<http://prefect.test/runs/flow-run/run-1|shop@feature/login → staging>" in reply["text"]
    assert "web-2" in reply["text"]
    [request] = starter.runs
    assert request.deployment == "deploy/chatops"
    assert signed_by_the_gateway("deploy", request) == {
        "app": "shop",
        "environment": "staging",
        "ref": "feature/login",
        "sha": None,
        "deployment_id": None,
        "requested_by": ALICE,
        "via": "slack",
        "force": False,
        "hosts": ["web-2"],
        "task": "deploy",
        "notify": {"channel": DEPLOYS},
    }
    assert request.tags == ["app:shop", "env:staging"]
    assert request.title == "shop@feature/login → staging"
    assert request.key and request.key.startswith("slack-")


def test_deploy_fills_in_the_apps_defaults(chat: Chat, starter: RecordingCreator) -> None:
    chat.command("shop")
    chat.command("deploy:migrate shop to stg!")
    first, second = starter.parameters
    assert (first["ref"], first["environment"], first["task"]) == ("main", "staging", "deploy")
    assert (second["environment"], second["task"], second["force"]) == ("staging", "migrate", True)


def test_no_environment_and_no_default_asks_which_instead_of_guessing(
    chat: Chat, starter: RecordingCreator
) -> None:
    reply = chat.command("billing@main")
    assert reply["response_type"] == "ephemeral"
    assert "which environment? billing deploys to: staging, production" in reply["text"]
    assert starter.runs == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nosuchapp to staging", "I don't know an app called `nosuchapp`. Apps: `billing`"),
        ("shopp to staging", "I don't know an app called `shopp` (did you mean `shop`?)"),
        ("shop to qa", "shop has no environment 'qa'. Known: staging, production."),
        ("shop to stagin", "shop has no environment 'stagin' (did you mean 'staging'?)"),
        ("ghost to qa", "block `ghost-qa`) are missing"),
        ("shop to staging/web-9", "has no host web-9. Its hosts: web-1, web-2"),
        ("deploy:seed shop to staging", "shop has no deploy task 'seed'. Known: deploy, migrate"),
        ("acme/nope to staging", "I don't know an app called `acme/nope`"),
        ("shop to production", f"You may not deploy *shop* to *production*. Allowed: <@{BOSS}>"),
        ("rollback shop in production", "You may not deploy *shop* to *production*"),
    ],
)
def test_requests_that_cannot_be_served_get_a_short_reply(
    chat: Chat, starter: RecordingCreator, text: str, expected: str
) -> None:
    reply = chat.command(text)
    assert reply["response_type"] == "ephemeral"
    assert expected in reply["text"]
    assert "Traceback" not in reply["text"]
    assert starter.runs == []


def test_production_is_only_deployed_by_the_allowed_user_from_the_allowed_channel(
    chat: Chat, starter: RecordingCreator
) -> None:
    reply = chat.command("shop to production", user=BOSS, channel=RANDOM)
    assert f"only done from <#{DEPLOYS}>" in reply["text"]
    assert starter.runs == []
    reply = chat.command("shop to production", user=BOSS, channel=DEPLOYS)
    assert reply["response_type"] == "in_channel"
    assert [p["environment"] for p in starter.parameters] == ["production"]


@pytest.mark.parametrize(
    "text",
    [
        "shop@$(reboot) to staging",
        "shop@`id` to staging",
        "shop@a;rm -rf / to staging",
        "shop@../../etc/passwd to staging",
        "shop@main..evil to staging",
        "shop@-rf to staging",
        "shop@fe\x07ature to staging",
        "shop@main to stag\u202eing",
        "sh$op to staging",
        "../shop to staging",
        "shop to staging/web-1;reboot",
        "deploy:$(id) shop to staging",
        "shop@<!channel> to staging",
        "shop@main to production|x",
    ],
)
def test_hostile_refs_and_names_are_refused_and_start_nothing(
    chat: Chat, starter: RecordingCreator, text: str
) -> None:
    reply = chat.command(text)
    assert reply["response_type"] == "ephemeral"
    assert "/deploy help" in reply["text"]
    assert "<!channel>" not in reply["text"]  # echoed user text is escaped: it pings nobody
    assert starter.runs == []


def test_rollback_starts_the_rollback_deployment(chat: Chat, starter: RecordingCreator) -> None:
    reply = chat.command("rollback shop in staging to v1.4.2")
    assert reply["response_type"] == "in_channel"
    assert "is rolling back *shop@v1.4.2 → staging*" in reply["text"]
    chat.command("rollback acme/shop in staging/web-1")
    first, second = starter.runs
    assert first.deployment == second.deployment == "rollback/chatops"
    assert signed_by_the_gateway("rollback", first) == {
        "app": "shop",
        "environment": "staging",
        "ref": "v1.4.2",
        "requested_by": ALICE,
        "via": "slack",
        "force": False,
        "hosts": None,
        "notify": {"channel": DEPLOYS},
    }
    assert second.parameters["ref"] is None and second.parameters["hosts"] == ["web-1"]
    assert second.title == "shop@previous release → staging"


# --------------------------------------------------------------------------- slash: locks
def test_a_locked_environment_refuses_other_peoples_deploys_even_forced(
    chat: Chat, starter: RecordingCreator
) -> None:
    reply = chat.command("lock staging on shop: release <!here> freeze")
    assert reply["response_type"] == "in_channel"
    assert f"<@{ALICE}> locked *staging* on *shop*: release &lt;!here&gt; freeze" in reply["text"]

    refused = chat.command("shop to staging", user=BOB)
    assert refused["response_type"] == "ephemeral"
    assert f"locked by <@{ALICE}>" in refused["text"]
    assert "release &lt;!here&gt; freeze" in refused["text"]
    assert "`lock staging on shop steal`" in refused["text"]
    assert starter.runs == []

    assert chat.command("shop to staging")["response_type"] == "in_channel"  # her own lock
    forced = chat.command("shop to staging!", user=BOB)
    assert forced["response_type"] == "ephemeral" and f"locked by <@{ALICE}>" in forced["text"]
    assert "does not pass a lock" in forced["text"]
    assert [(p["requested_by"], p["force"]) for p in starter.parameters] == [(ALICE, False)]
    assert "is locked by" in chat.command("rollback shop in staging!", user=BOB)["text"]
    assert (
        "is locked by"
        in chat.click("rollback", {"app": "shop", "environment": "staging"}, user=BOB)[0]["text"]
    )
    assert len(starter.runs) == 1

    stolen = chat.command("lock staging on shop steal: hotfix", user=BOB)
    assert stolen["response_type"] == "in_channel"
    assert f"<@{ALICE}>, your lock was taken over by <@{BOB}>" in stolen["text"]
    assert chat.command("shop to staging", user=BOB)["response_type"] == "in_channel"
    assert "is locked by" in chat.command("shop to staging!")["text"]
    assert len(starter.runs) == 2


def record_deployed(summary: DeploySummary, commit_url: str | None = None) -> None:
    """What a successful deploy leaves behind for "what is deployed where" (a deploy writes it
    from its run; the readers do not ask which run wrote it, and a run would cost 1 s here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Artifact creation outside", FutureWarning)
        history.write_deployed(summary, commit_url)
    history.write_environments()


def environments_page() -> list[dict[str, str]]:
    """The rows of the latest ``environments`` page, as the Prefect UI gets them."""
    with get_client(sync_client=True) as client:
        [latest] = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=["environments"])
            )
        )
    return json.loads(str(latest.data))


DEPLOYED = DeploySummary(
    app="shop",
    environment="staging",
    ref="v7-status-test",
    sha="a" * 40,
    release="20261126T000000Z-aaaaaaa",
    hosts=["web-1"],
    steps=[Step("build", "done", 1.0)],
    requested_by=ALICE,
    finished="2026-11-26 00:00:00 UTC",
    run_url="http://prefect.test/runs/flow-run/x",
)
"""A successful deploy of shop to staging, as its summary says."""


def test_status_and_latest_show_what_is_deployed(chat: Chat) -> None:
    summary = DEPLOYED
    record_deployed(summary)
    status = chat.command("status")["text"]
    assert "*shop* on *staging*: `v7-status-test`" in status
    assert f"deployed by <@{ALICE}>" in status
    assert "v7-status-test" in chat.command("status shop in staging")["text"]
    assert "v7-status-test" not in chat.command("status billing")["text"]
    latest = chat.command("latest shop on staging")["text"]
    assert "release `20261126T000000Z-aaaaaaa` on web-1" in latest

    later = replace(summary, ref="v8-status-test", sha="b" * 40, release="20261127T000000Z-b")
    record_deployed(later)
    assert "`v8-status-test`" in chat.command("status shop in staging")["text"]
    record_deployed(replace(summary, ref=PREVIOUS))  # a rollback to the previous release
    back = chat.command("status shop in staging")["text"]
    assert "`v7-status-test` at" in back and "previous release" not in back


def test_the_environments_page_and_status_show_the_same_row(chat: Chat) -> None:
    commit = "https://ghe.example.net/acme/shop/commit/" + "c" * 40
    summary = replace(
        DEPLOYED,
        ref="feature/page-test",
        sha="c" * 40,
        hosts=["web-1", "web-2"],
        finished=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        run_url="http://prefect.test/runs/flow-run/page",
    )
    record_deployed(summary, commit)
    [row] = [r for r in environments_page() if (r["app"], r["environment"]) == ("shop", "staging")]
    assert row["runs"] == "feature/page-test"
    assert row["revision"] == f"[ccccccc]({commit})"
    assert row["deployed by"] == ALICE and row["deployed"].endswith("UTC (just now)")
    assert row["run"] == "[run](http://prefect.test/runs/flow-run/page)"
    assert row["lock"] == "–"
    status = chat.command("status shop in staging")["text"]
    assert f"`feature/page-test` at <{commit}|cccccccccccc>" in status
    assert "(just now)" in status

    chat.command("lock staging on shop: QA checks the page")
    deadline = time.monotonic() + 15  # the gateway writes the page in the background
    while "QA checks the page" not in row["lock"] and time.monotonic() < deadline:
        time.sleep(0.2)
        [row] = [
            r for r in environments_page() if r["environment"] == "staging" and r["app"] == "shop"
        ]
    assert row["lock"] == f"{ALICE} (slack): QA checks the page"
    assert "QA checks the page" in chat.command("where shop")["text"]
    chat.command("unlock staging on shop")


def test_a_deploy_is_answered_within_a_second_when_prefect_is_slow(
    fake_slack: FakeSlack,
) -> None:
    slow = RecordingCreator(delay=1.2)  # twice the Slack budget (0.6 s), past the bound below
    with gateway(slow) as client:
        chat = Chat(client, fake_slack)
        started = time.monotonic()
        reply = chat.command("shop@v2 to staging", patient=False)
        took = time.monotonic() - started
        assert took < 1.0
        assert reply["text"].startswith(":hourglass: Queued *shop@v2 → staging*")
        assert "the run link follows here" in reply["text"]
        [later] = chat.later(seconds=15)
        assert later["response_type"] == "in_channel"
        assert f"<@{ALICE}>: *shop@v2 → staging* has started" in later["text"]
        assert "<http://prefect.test/runs/flow-run/run-1|shop@v2 → staging>" in later["text"]
    assert len(slow.runs) == 1
    assert fake_slack.violations == []


def test_requests_behind_others_are_told_how_many_wait_ahead_and_get_their_link_later(
    fake_slack: FakeSlack,
) -> None:
    slow = RecordingCreator(delay=0.5)
    with gateway(slow, replace(SETTINGS, slack_budget=0.2)) as client:  # less than one creation
        chat = Chat(client, fake_slack)
        chat.command("shop@v1 to staging", patient=False)
        second = chat.command("billing@v1 to staging", user=BOSS, patient=False)
        assert second["text"].startswith(
            ":hourglass: Queued *billing@v1 → staging*, 1 ahead of you"
        )
        [later] = chat.later(seconds=15)
        assert "billing@v1 → staging" in later["text"] and "/runs/flow-run/run-2" in later["text"]
    assert [run.app for run in slow.runs] == ["shop", "billing"]
    assert fake_slack.violations == []


def test_a_queued_request_says_how_many_are_ahead(fake_slack: FakeSlack) -> None:
    slow = RecordingCreator(delay=0.5)
    with gateway(slow, replace(SETTINGS, slack_budget=0.2)) as client:  # less than one creation
        chat = Chat(client, fake_slack)
        replies = [chat.command(f"shop@v{n} to staging", patient=False) for n in range(3)]
        assert "ahead of you" in replies[2]["text"]
        wait_for(lambda: len(slow.runs) == 3, seconds=15)
    assert [run.parameters["ref"] for run in slow.runs] == ["v0", "v1", "v2"]


def test_reads_slower_than_slacks_budget_are_answered_later(
    fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_history() -> list:
        time.sleep(0.9)  # three times the budget below
        return []

    monkeypatch.setattr(history, "deployed_everywhere", slow_history)
    with gateway(RecordingCreator(), replace(SETTINGS, query_budget=0.3)) as client:
        chat = Chat(client, fake_slack)
        started = time.monotonic()
        reply = chat.command("status", patient=False)
        assert time.monotonic() - started < 0.9
        assert reply["text"].endswith(SLOW_NOTE)
        [later] = chat.later(seconds=15)
        assert "Nothing deployed there yet" in later["text"]


# --------------------------------------------------------------------------- interactions
def test_rollback_button_starts_a_rollback_and_answers_through_response_url(
    chat: Chat, starter: RecordingCreator
) -> None:
    [answer] = chat.click("rollback", {"app": "shop", "environment": "staging"})
    assert "is rolling back *shop@previous release → staging*" in answer["text"]
    [request] = starter.runs
    assert request.deployment == "rollback/chatops"
    assert request.parameters["ref"] is None
    assert request.parameters["notify"] == {"channel": DEPLOYS}


def test_deploy_anyway_button_forces_the_deploy(chat: Chat, starter: RecordingCreator) -> None:
    value = {
        "app": "shop",
        "environment": "staging",
        "ref": "feature-x",
        "hosts": ["web-1"],
        "task": "migrate",
    }
    [answer] = chat.click("deploy_anyway", value)
    assert "(forced)" in answer["text"]
    [params] = starter.parameters
    assert (params["ref"], params["hosts"], params["task"], params["force"]) == (
        "feature-x",
        ["web-1"],
        "migrate",
        True,
    )


def test_buttons_are_checked_like_commands(chat: Chat, starter: RecordingCreator) -> None:
    denied = chat.click("rollback", {"app": "shop", "environment": "production"})
    assert "You may not deploy *shop* to *production*" in denied[0]["text"]
    bad = chat.click("deploy_anyway", {"app": "shop", "environment": "staging", "ref": "$(reboot)"})
    assert "This button's data is not valid: ref '$(reboot)'" in bad[0]["text"]
    assert "not valid" in chat.click("rollback", "not json")[0]["text"]
    assert "not valid" in chat.click("rollback", {"app": "shop;x", "environment": "s"})[0]["text"]
    assert starter.runs == []


def running_deploy(app: str, environment: str) -> uuid.UUID:
    """A Running run of the deploy flow tagged with ``app`` and ``environment``, as the
    intake creates them (no process runs it)."""
    with get_client(sync_client=True) as prefect:
        run = prefect.create_flow_run(deploy, tags=run_tags(app, environment), name="held")
        prefect.set_flow_run_state(run.id, Running(), force=True)
    return run.id


def state_of(run_id: uuid.UUID) -> tuple[str, str | None]:
    with get_client(sync_client=True) as prefect:
        state = prefect.read_flow_run(run_id).state
    return state.name, state.message


def test_abort_cancels_the_running_deploy_for_those_allowed_only(chat: Chat) -> None:
    held = running_deploy("shop", "production")
    try:
        refused = chat.command("abort shop in production", user=BOB)
        assert "You may not deploy *shop* to *production*" in refused["text"]
        assert state_of(held) == ("Running", None)

        [clicked] = chat.click("abort", {"app": "shop", "environment": "production"}, user=BOSS)
        assert f"<@{BOSS}> aborted" in clicked["text"] and "held" in clicked["text"]
        assert clicked["response_type"] == "in_channel"
        assert state_of(held) == ("Cancelling", f"Aborted by {BOSS}")
        again = chat.command("abort shop in production", user=BOSS)
        assert f"|held> is already stopping (Aborted by {BOSS})." in again["text"]

        nothing = chat.command("abort shop in staging")
        assert nothing["text"] == "Nothing is deploying *shop* to *staging*."
    finally:
        with get_client(sync_client=True) as prefect:
            prefect.set_flow_run_state(held, Cancelled(), force=True)


def test_view_run_link_clicks_just_get_200(
    client: TestClient, fake_slack: FakeSlack, starter: RecordingCreator
) -> None:
    url = fake_slack.response_url("view")
    response = post_slack(client, "/slack/interactions", action_body("view_run", "", url))
    assert response.status_code == 200
    time.sleep(0.3)
    assert fake_slack.responses("view") == [] and starter.runs == []
