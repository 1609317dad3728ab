"""The HTTP gateway's gate and what lies behind every channel: signatures and body limits, the
configuration it reads, the runs it creates, the terminal's endpoint and the durable intake.

The app runs with its real lifespan against the test Prefect server: configuration blocks,
locks (Prefect Variables) and history are real, and so is the intake database. Creating runs is
recorded by a ``RecordingCreator`` where only routing and validation are under test; the tests
of the real creator create real flow runs of registered (but unserved) deployments.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from starlette.testclient import TestClient

from adapters import history
from blocks import App, Environment, documents
from chatops.catalog import Catalog, Snapshot, prefect_loader
from chatops.gateway import MAX_BODY_BYTES
from chatops.intake import CLIENT_SETTINGS, Busy, PrefectCreator, Started
from chatops.request import Run
from chatops.settings import GatewaySettings
from flows.deploy import deploy
from flows.rollback import rollback
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    BOSS,
    DEPLOYS,
    SETTINGS,
    SLACK_FIXTURES,
    SLACK_SECRET,
    WEBHOOKS,
    Chat,
    RecordingCreator,
    cli_headers,
    deployment_event,
    deployment_on_fake_github,
    gateway,
    github_headers,
    post_cli,
    post_github,
    post_slack,
    slack_headers,
    slash_body,
    wait_for,
    webhook_fixture,
)

pytestmark = pytest.mark.usefixtures("no_locks")  # tests/gateway_fixtures.py


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


def test_the_configuration_is_read_page_by_page_both_block_types_in_one_query(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "PAGE_SIZE", 3)  # the test configuration: 4 apps, 7 environments
    asked: list[dict] = []

    async def load() -> Snapshot:
        async with get_client() as client:
            request = client.request

            async def recorded(method: str, path: str, **kwargs: Any) -> Any:
                if path == "/block_documents/filter":
                    asked.append(kwargs["json"])
                return await request(method, path, **kwargs)

            client.request = recorded  # type: ignore[method-assign]
            return await prefect_loader(client)()

    snapshot = asyncio.run(load())
    assert {"shop", "billing", "hello", "ghost"} <= set(snapshot.apps)
    assert snapshot.app("hello").default_ref == "master"
    wanted = {f"{a}-{e}" for a in ("shop", "billing", "hello") for e in ("staging", "production")}
    assert wanted <= set(snapshot.environments)
    assert snapshot.environment("shop", "production").allowed_users == [BOSS]
    blocks = len(snapshot.apps) + len(snapshot.environments)
    assert len(asked) == blocks // 3 + 1, "one query per page of either type"
    assert [q["offset"] for q in asked] == [3 * n for n in range(len(asked))]


def test_the_environments_page_lists_every_configured_app_past_one_page(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "PAGE_SIZE", 2)  # 4 apps in the test configuration
    rows = {(row.app, row.environment) for row in history.environment_rows()}
    configured_there = {
        (a, e) for a in ("shop", "billing", "hello") for e in ("staging", "production")
    }
    assert configured_there | {("ghost", "qa")} <= rows


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
def test_deployments(configured: None) -> Iterator[None]:
    """deploy/gateway-tests and rollback/gateway-tests: registered, never served. Removed with
    their runs at the end, so that no module after this one finds a deploy waiting to start."""
    made = [flow.to_deployment(name="gateway-tests").apply() for flow in (deploy, rollback)]
    yield
    with get_client(sync_client=True) as client:
        for deployment_id in made:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            for run in runs:
                client.delete_flow_run(run.id)
            client.delete_deployment(deployment_id)


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
    hello = "Codertocat/Hello-World"
    with deployment_on_fake_github(fake_github, hello, "master", "production") as made:
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
