"""The HTTP gateway: what Slack, GitHub and the CLI get back, and what (if anything) it starts.

The app runs with its real lifespan against the test Prefect server: configuration blocks,
locks (Prefect Variables) and history are real, and so is the intake database. Creating runs is
recorded by a ``RecordingCreator`` where only routing and validation are under test; the tests
at the end create real flow runs of registered (but unserved) deployments.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.states import Cancelled, Running
from starlette.testclient import TestClient

from adapters import history
from adapters.run_signing import claims, problem, signing_key
from blocks import App, Environment
from chatops.catalog import Catalog, Snapshot, prefect_loader
from chatops.gateway import MAX_BODY_BYTES, SLOW_NOTE
from chatops.intake import CLIENT_SETTINGS, Busy, PrefectCreator, Started
from chatops.request import Run
from chatops.settings import GatewaySettings
from flows.deploy import deploy
from flows.rollback import rollback
from model.summary import PREVIOUS, DeploySummary, Step, run_tags
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    BOB,
    BOSS,
    DEPLOYS,
    RANDOM,
    SETTINGS,
    SLACK_FIXTURES,
    SLACK_SECRET,
    WEBHOOKS,
    RecordingCreator,
    action_body,
    clear_locks,
    cli_headers,
    deployment_event,
    gateway,
    github_headers,
    post_cli,
    post_github,
    post_slack,
    save_config,
    slack_headers,
    slash_body,
    wait_for,
    webhook_fixture,
)


@pytest.fixture(scope="module")
def configured(prefect_server: None) -> None:
    save_config()
    clear_locks()  # of tests before this module


@pytest.fixture(autouse=True)
def no_locks(configured: None) -> Iterator[None]:
    """Each test leaves no lock or freeze behind for the next."""
    yield
    clear_locks()


@pytest.fixture
def starter() -> RecordingCreator:
    return RecordingCreator()


@pytest.fixture
def client(starter: RecordingCreator) -> Iterator[TestClient]:
    with gateway(starter) as test_client:
        yield test_client


class Chat:
    """Types slash commands as a user would, and reads what came back."""

    def __init__(self, client: TestClient, slack: FakeSlack) -> None:
        self.client = client
        self.slack = slack
        self.count = 0

    def command(
        self, text: str, user: str = ALICE, channel: str = DEPLOYS, patient: bool = True
    ) -> dict:
        """The answer to ``text``. A ``patient`` user also reads the follow-up when the reply
        only said Prefect is slow (SQLite lock contention can cost a Prefect call 2 s)."""
        response = post_slack(self.client, "/slack/commands", self.body(text, user, channel))
        assert response.status_code == 200, response.text
        reply = response.json()
        if patient and reply["text"].endswith(SLOW_NOTE):
            [reply] = self.later(seconds=30)
        return reply

    def body(self, text: str, user: str = ALICE, channel: str = DEPLOYS) -> bytes:
        self.count += 1
        self.last_url_name = f"cmd-{self.count}"
        return slash_body(text, self.slack.response_url(self.last_url_name), user, channel)

    def later(self, seconds: float = 10.0) -> list[dict]:
        """What the gateway posted to the last command's response_url."""
        return wait_for(lambda: self.slack.responses(self.last_url_name), seconds)

    def click(
        self, action_id: str, value: object, user: str = ALICE, channel: str = DEPLOYS
    ) -> list[dict]:
        self.count += 1
        name = f"click-{self.count}"
        body = action_body(action_id, value, self.slack.response_url(name), user, channel)
        response = post_slack(self.client, "/slack/interactions", body)
        assert response.status_code == 200 and response.content == b""
        return wait_for(lambda: self.slack.responses(name))


@pytest.fixture
def chat(client: TestClient, fake_slack: FakeSlack) -> Iterator[Chat]:
    yield Chat(client, fake_slack)
    assert fake_slack.violations == []


# --------------------------------------------------------------------------- the gate
def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "configuration_loaded": True, "requests": {}}


@pytest.mark.parametrize("path", ["/slack/commands", "/slack/interactions"])
def test_slack_requests_without_a_valid_signature_get_401_and_start_nothing(
    client: TestClient, starter: RecordingCreator, path: str
) -> None:
    body = slash_body("shop to staging", "https://hooks.slack.com/commands/T/1/x")
    now = int(time.time())
    good = slack_headers(body)
    cases = {
        "no headers": {},
        "no signature": {"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"]},
        "wrong secret": slack_headers(body, secret="not-the-secret"),
        "stale": slack_headers(body, timestamp=now - 301),
        # past Slack's 5 minutes even when the posts below take a while on a busy machine
        "from the future": slack_headers(body, timestamp=now + 330),
        "timestamp not a number": {**good, "X-Slack-Request-Timestamp": "12e9"},
        "body changed": good,
    }
    for name, headers in cases.items():
        sent = body + b"&x=1" if name == "body changed" else body
        response = client.post(path, content=sent, headers=headers)
        assert response.status_code == 401, name
        assert SLACK_SECRET not in response.text
    assert starter.runs == []


def test_slack_skew_of_exactly_300_seconds_is_still_accepted(client: TestClient) -> None:
    body = slash_body("help", "https://hooks.slack.com/commands/T/1/x")
    response = post_slack(client, "/slack/commands", body, timestamp=int(time.time()) - 299)
    assert response.status_code == 200


def test_slack_fixture_bodies_signed_now_are_accepted(
    client: TestClient, starter: RecordingCreator
) -> None:
    real = (SLACK_FIXTURES / "slash_command.real_modified.form.txt").read_bytes()
    reply = post_slack(client, "/slack/commands", real).json()
    assert reply["response_type"] == "ephemeral"
    assert "shop@feature/login to staging" in reply["text"]  # empty text is help

    docs = (SLACK_FIXTURES / "slash_command.docs_example.form.txt").read_bytes()
    reply = post_slack(client, "/slack/commands", docs).json()
    assert "I don't know an app called `94070`" in reply["text"]
    assert "`shop`" in reply["text"] and "`billing`" in reply["text"]

    clicked = (SLACK_FIXTURES / "block_actions.form.txt").read_bytes()
    response = post_slack(client, "/slack/interactions", clicked)
    assert response.status_code == 200  # action "a" is not ours: nothing to do
    assert starter.runs == []


def test_an_unset_secret_refuses_everything(starter: RecordingCreator) -> None:
    unset = GatewaySettings(slack_signing_secret="", github_webhook_secret="  ")
    with gateway(starter, unset) as client:
        body = slash_body("shop to staging", "https://hooks.slack.com/commands/T/1/x")
        assert post_slack(client, "/slack/commands", body, secret="").status_code == 401
        payload = webhook_fixture("deployment")
        assert post_github(client, payload, "deployment", secret="").status_code == 401
        assert post_github(client, payload, "deployment", secret="  ").status_code == 401
        assert post_cli(client, "shop to staging", token="").status_code == 401
    assert starter.runs == []


def test_github_requests_without_a_valid_signature_get_401_and_start_nothing(
    client: TestClient, starter: RecordingCreator
) -> None:
    body = webhook_fixture("deployment")
    good = github_headers(body, "deployment")
    signature = good["X-Hub-Signature-256"]
    cases = {
        "missing": {k: v for k, v in good.items() if k != "X-Hub-Signature-256"},
        "no sha256= prefix": {**good, "X-Hub-Signature-256": signature.removeprefix("sha256=")},
        "wrong secret": github_headers(body, "deployment", secret="nope"),
        "legacy sha1 only": {
            **{k: v for k, v in good.items() if k != "X-Hub-Signature-256"},
            "X-Hub-Signature": "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6",
        },
    }
    for name, headers in cases.items():
        assert client.post("/github/webhook", content=body, headers=headers).status_code == 401, (
            name
        )
    changed = body.replace(b"production", b"staging")
    assert client.post("/github/webhook", content=changed, headers=good).status_code == 401
    assert starter.runs == []


def test_github_signature_vector_is_checked_over_the_raw_bytes() -> None:
    vector = json.loads((WEBHOOKS / "github_webhook_signature_vector.json").read_text())
    settings = GatewaySettings(slack_signing_secret="x", github_webhook_secret=vector["secret"])
    with gateway(RecordingCreator(), settings) as client:
        headers = {"X-GitHub-Event": "ping", **vector["expected_header"]}
        response = client.post(
            "/github/webhook", content=vector["payload"].encode(), headers=headers
        )
    # The signature is GitHub's own example and passes; the body is not JSON, hence 400.
    assert response.status_code == 400


def test_malformed_bodies_get_400(client: TestClient, starter: RecordingCreator) -> None:
    url = "https://hooks.slack.com/commands/T/1/x"
    slack_cases = {
        "/slack/commands": [
            b"\xff\xfe not utf-8",
            b"text=shop",
            b"user_id=U1&text=x",
            slash_body("x", url).replace(b"user_id=U0ALICE001", b"user_id=%3Cbad%3E"),
            slash_body("x", "file:///etc/passwd"),
            b"&".join(b"f%d=1" % i for i in range(100)),
        ],
        "/slack/interactions": [
            b"payload=%7Bnot json",
            b"nothing=here",
            b"payload=%5B1%5D",
            b"payload=" + b"%5B" * 5000,
            b"payload=" + json.dumps({"type": "block_actions", "actions": []}).encode(),
        ],
    }
    for path, bodies in slack_cases.items():
        for body in bodies:
            assert post_slack(client, path, body).status_code == 400, (path, body[:40])
    for body, event in [
        (b"{not json", "push"),
        (b"[1, 2]", "push"),
        (b"\xff", "deployment"),
        (b"[" * 100_000, "push"),
        (b"{}", ""),
    ]:
        response = post_github(client, body, event)
        assert response.status_code == 400, (body[:20], event)
    assert starter.runs == []


def chunks(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        yield b"a" * min(piece, size - sent)
        sent += piece


@pytest.mark.parametrize("path", ["/slack/commands", "/slack/interactions", "/github/webhook"])
def test_bodies_over_one_mebibyte_get_413(
    client: TestClient, starter: RecordingCreator, path: str
) -> None:
    too_big = b"a" * (MAX_BODY_BYTES + 1)
    assert client.post(path, content=too_big).status_code == 413
    # Without Content-Length (chunked), the limit is enforced while reading.
    assert client.post(path, content=chunks(MAX_BODY_BYTES + 1)).status_code == 413
    assert client.post(path, content=chunks(MAX_BODY_BYTES)).status_code in (400, 401)
    assert starter.runs == []


# --------------------------------------------------------------------------- slash: deploy
def signed_by_the_gateway(flow_name: str, run: Run) -> dict:
    """The run's parameters without its signature, once the signature is shown to cover them
    and the run's request key (and to fail when one of them is changed)."""
    parameters = dict(run.parameters)
    signature = parameters.pop("signature")
    key = signing_key()
    assert problem(claims(flow_name, parameters, run.key), signature, key) is None
    assert problem(claims(flow_name, parameters, "another-key"), signature, key) is not None
    changed = {**parameters, "force": not parameters["force"]}
    assert problem(claims(flow_name, changed, run.key), signature, key) is not None
    return parameters


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
    from blocks import GitHubAccess

    sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    fake_github.add_repo("acme/shop", refs={"main": sha})
    GitHubAccess(token=fake_github.token, api_url=fake_github.url).save("default", overwrite=True)
    try:
        repo = fake_github.client().get_repo("acme/shop")
        made = repo.create_deployment("main", environment="staging", required_contexts=[])
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
    finally:
        GitHubAccess.delete("default")
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


# --------------------------------------------------------------------------- configuration
def test_configuration_changes_reach_a_running_gateway(fake_slack: FakeSlack) -> None:
    quick = GatewaySettings(
        slack_signing_secret=SLACK_SECRET,
        github_webhook_secret="x",
        catalog_refresh_seconds=0.2,
        catalog_reread_seconds=0.05,
    )
    try:
        with gateway(RecordingCreator(), quick) as client:
            chat = Chat(client, fake_slack)
            assert "I don't know an app called `newapp`" in chat.command("where newapp")["text"]
            App(repository="acme/newapp", environments=["staging"]).save("newapp", overwrite=True)
            Environment(
                hosts=["new-1"], ssh_private_key="k", deploy_path="/srv/app", restart_command="true"
            ).save("newapp-staging", overwrite=True)
            wait_for(lambda: "*staging*: new-1" in chat.command("where newapp")["text"])
    finally:
        App.delete("newapp")
        Environment.delete("newapp-staging")


def test_a_failed_refresh_keeps_the_last_good_configuration(configured: None) -> None:
    async def scenario() -> None:
        async with get_client() as reachable, PrefectClient("http://127.0.0.1:9/api") as down:
            use = {"client": reachable}

            async def load() -> Snapshot:
                return await prefect_loader(use["client"])()

            catalog = Catalog(load, timeout=30.0)  # a busy machine's server may take seconds
            assert await catalog.refresh()
            good = catalog.snapshot
            assert good.app("shop") is not None
            assert good.environment("shop", "production").allowed_users == [BOSS]
            assert (
                good.environment("shop", "production").ssh_private_key.get_secret_value()
                != "not-a-real-key"
            )  # read without secrets
            use["client"] = down
            catalog.timeout = 1.0
            started = time.monotonic()
            assert not await catalog.refresh()
            assert time.monotonic() - started < 3
            assert catalog.snapshot is good

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the real creator
class UnservedDeploymentsCreator(PrefectCreator):
    """The real creator, aimed at deployments that are registered but never served."""

    async def create(self, run: Run) -> Started:
        aimed = run.deployment.replace("/chatops", "/gateway-tests")
        return await super().create(replace(run, deployment=aimed))


@pytest.fixture(scope="module")
def test_deployments(configured: None) -> None:
    """deploy/gateway-tests and rollback/gateway-tests: registered, never served."""
    deploy.to_deployment(name="gateway-tests").apply()
    rollback.to_deployment(name="gateway-tests").apply()


@pytest.fixture
def real_client(test_deployments: None) -> Iterator[TestClient]:
    with gateway(creator=UnservedDeploymentsCreator) as client:
        yield client


def read_runs(ids: list[str]) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))


def started_run(client: TestClient, answer: dict) -> str:
    """The run id of a request the gateway queued, once the intake started it."""
    [queued] = answer["queued"]
    ticket = wait_for(lambda: client.app.state.intake.store.ticket(queued["request"]).run_id)
    return ticket


def test_the_same_deployment_or_delivery_twice_starts_one_run(real_client: TestClient) -> None:
    client = real_client
    body = deployment_event(id=987654321)
    first = started_run(client, post_github(client, body, "deployment", delivery="d-1").json())
    again = started_run(client, post_github(client, body, "deployment", delivery="d-2").json())
    assert first == again
    push = webhook_fixture("push.with-new-branch")
    delivery = f"push-{time.time_ns()}"
    one = started_run(client, post_github(client, push, "push", delivery=delivery).json())
    two = started_run(client, post_github(client, push, "push", delivery=delivery).json())
    assert one == two
    other = started_run(client, post_github(client, push, "push").json())
    assert other != one
    [run] = read_runs([first])
    assert run.name == "hello@master (f95f852) → production"
    assert {"app:hello", "env:production"} <= set(run.tags)
    assert run.parameters["deployment_id"] == 987654321
    assert run.state.is_scheduled()


def test_real_runs_are_linked_and_deploys_lists_them(
    real_client: TestClient, fake_slack: FakeSlack
) -> None:
    chat = Chat(real_client, fake_slack)
    reply = chat.command("shop@real-starter to staging")
    assert reply["response_type"] == "in_channel"
    run_id = reply["text"].split("/runs/flow-run/")[1].split("|")[0]
    [run] = read_runs([run_id])
    assert run.parameters["ref"] == "real-starter"
    assert run.parameters["notify"] == {"channel": DEPLOYS}
    deploys = chat.command("deploys shop@real-starter in staging")["text"]
    assert f"/runs/flow-run/{run_id}|shop@real-starter → staging>" in deploys
    assert f"by <@{ALICE}>" in deploys


# --------------------------------------------------------------------------- the terminal
def test_the_cli_gets_slacks_answers_and_deploys_as_the_local_user(
    client: TestClient, starter: RecordingCreator
) -> None:
    response = post_cli(client, "where shop", user="carol")
    assert response.status_code == 200
    assert "*staging* (default): web-1, web-2" in response.json()["text"]
    deployed = post_cli(client, "deploy acme/shop@v3 to staging", user="carol", key="k-1").json()
    assert deployed["ok"] and deployed["ticket"]["run_id"] == "run-1"
    assert deployed["text"].startswith("carol is deploying *shop@v3 → staging*")
    [run] = starter.runs
    assert (run.parameters["requested_by"], run.parameters["via"]) == ("carol", "cli")
    assert run.parameters["notify"] is None and run.key == "cli-k-1"
    again = post_cli(client, "deploy acme/shop@v3 to staging", user="carol", key="k-1").json()
    assert again["ticket"]["id"] == deployed["ticket"]["id"] and len(starter.runs) == 1


def test_the_cli_is_refused_clearly_and_nothing_starts(
    client: TestClient, starter: RecordingCreator
) -> None:
    unparsed = post_cli(client, "deploy shop@$(id) to staging")
    assert unparsed.status_code == 422 and "'$'" in unparsed.json()["text"]
    refused = post_cli(client, "deploy shop to qa").json()
    assert not refused["ok"] and "Known: staging, production" in refused["text"]
    assert post_cli(client, "shop to staging", token="wrong").status_code == 401
    assert client.post("/cli/commands", content=b"{", headers=cli_headers()).status_code == 400
    assert starter.runs == []


def test_a_queued_cli_request_can_be_asked_about(starter: RecordingCreator) -> None:
    slow = RecordingCreator(delay=0.5)  # five times the CLI's wait
    with gateway(slow) as client:
        queued = post_cli(client, "deploy shop to staging", wait=0.1, key="q-1").json()
        ticket = queued["ticket"]
        assert ticket["state"] == "queued" and ticket["run_id"] is None
        headers = cli_headers()
        later = wait_for(
            lambda: client.get(f"/cli/requests/{ticket['key']}", headers=headers).json()["run_id"]
        )
        assert later == "run-1"
        assert client.get("/cli/requests/cli-unknown", headers=headers).status_code == 404
        assert client.get(f"/cli/requests/{ticket['key']}").status_code == 401


# --------------------------------------------------------------------------- durable intake
def test_nothing_accepted_is_lost_when_the_gateway_stops_before_prefect_answers(
    fake_slack: FakeSlack, tmp_path
) -> None:
    intake = tmp_path / "intake.db"
    down = RecordingCreator(failures=10**6)
    with gateway(down, intake=intake) as client:
        chat = Chat(client, fake_slack)
        texts = [chat.command(f"shop@v{n} to staging", patient=False)["text"] for n in range(3)]
        assert all(text.startswith(":hourglass: Queued") for text in texts)
        assert post_github(client, webhook_fixture("deployment"), "deployment").status_code == 202
        assert post_cli(client, "deploy billing to staging", wait=0.1).status_code == 200
    assert down.runs == []
    up = RecordingCreator()
    with gateway(up, intake=intake):
        wait_for(lambda: len(up.runs) == 5, seconds=20)
        time.sleep(0.5)
    assert sorted(r.parameters["ref"] for r in up.runs) == ["main", "master", "v0", "v1", "v2"]
    started = [m for n in range(1, 4) for m in fake_slack.responses(f"cmd-{n}")]
    assert len(started) == 3 and all("has started" in m["text"] for m in started)


def test_a_request_that_cannot_start_yet_is_said_to_wait_then_starts(
    fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chatops.intake.SLOW_NOTICE_SECONDS", 0.3)
    monkeypatch.setattr("chatops.intake.RETRY_FIRST_SECONDS", 0.1)
    monkeypatch.setattr("chatops.intake.RETRY_MAX_SECONDS", 0.2)
    flaky = RecordingCreator(failures=4)
    with gateway(flaky) as client:
        chat = Chat(client, fake_slack)
        chat.command("shop to staging", patient=False)
        waiting, started = wait_for(lambda: len(chat.later()) == 2 and chat.later(), seconds=20)
        assert (
            "still waiting to start" in waiting["text"] and "database is locked" in waiting["text"]
        )
        assert "has started" in started["text"]
    assert len(flaky.runs) == 1


def test_the_same_slack_interaction_twice_starts_one_run(
    client: TestClient, fake_slack: FakeSlack, starter: RecordingCreator
) -> None:
    body = slash_body("shop to staging", fake_slack.response_url("twice"), trigger_id="t.1.x")
    for _ in range(2):
        assert post_slack(client, "/slack/commands", body).status_code == 200
    time.sleep(0.5)
    assert len(starter.runs) == 1


def test_a_refused_github_deployment_gets_a_failure_status(
    chat: Chat, fake_github, starter: RecordingCreator
) -> None:
    from blocks import GitHubAccess

    sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    fake_github.add_repo("Codertocat/Hello-World", refs={"master": sha})
    GitHubAccess(token=fake_github.token, api_url=fake_github.url).save("default", overwrite=True)
    try:
        repo = fake_github.client().get_repo("Codertocat/Hello-World")
        made = repo.create_deployment("master", environment="production", required_contexts=[])
        chat.command("lock production on hello: audit")
        body = deployment_event(id=made.id, sha=made.sha)
        assert post_github(chat.client, body, "deployment").status_code == 409
        states = wait_for(lambda: fake_github.statuses(made.id))
        assert states[-1]["state"] == "failure"
        # GitHub shows a status as plain text: no Slack markup in it.
        description = states[-1]["description"]
        assert "production on hello is locked by @U" in description and ": audit." in description
        assert not set("*<>`") & set(description), description
        assert fake_github.violations == []
    finally:
        GitHubAccess.delete("default")
    assert starter.runs == []


def test_a_new_app_is_found_at_once_without_waiting_for_the_refresh(
    fake_slack: FakeSlack,
) -> None:
    slow_refresh = replace(SETTINGS, catalog_refresh_seconds=3600)
    try:
        with gateway(RecordingCreator(), slow_refresh) as client:
            chat = Chat(client, fake_slack)
            App(repository="acme/fresh", environments=["staging"]).save("fresh", overwrite=True)
            Environment(
                hosts=["f-1"], ssh_private_key="k", deploy_path="/srv/app", restart_command="true"
            ).save("fresh-staging", overwrite=True)
            assert "*staging*: f-1" in chat.command("where fresh")["text"]
    finally:
        App.delete("fresh")
        Environment.delete("fresh-staging")


def test_a_busy_prefect_is_retried_soon_by_the_intake_not_later_by_its_client() -> None:
    """A 503 ("database is locked") reaches the intake at once as Busy: Prefect's client would
    sleep 2 s, then 4 s, before its own next try (and 2 s even when told not to try again); the
    intake tries again 0.2 s later."""
    posts: list[str] = []

    class Locked(http.server.BaseHTTPRequestHandler):
        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # the client's CSRF token request, as a server without CSRF
            self.answer(422, b'{"detail": "CSRF protection is disabled."}')

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            posts.append(self.path)
            self.answer(503, b'{"detail": "database is locked"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Locked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run = Run("deploy/chatops", {"app": "shop", "environment": "staging"}, "shop → staging", "k-1")

    async def scenario() -> None:
        api = f"http://127.0.0.1:{server.server_address[1]}/api"
        async with PrefectClient(api=api, httpx_settings=CLIENT_SETTINGS) as client:
            creator = PrefectCreator(client)
            creator._ids[run.deployment] = uuid.uuid4()  # skip the lookup by name
            asked = time.monotonic()
            with pytest.raises(Busy, match="503"):
                await creator.create(run)
            assert time.monotonic() - asked < 1.0  # Prefect's client pauses at least 1.6 s

    try:
        asyncio.run(scenario())
    finally:
        server.shutdown()
    assert len(posts) == 1 and posts[0].endswith("/create_flow_run"), posts
