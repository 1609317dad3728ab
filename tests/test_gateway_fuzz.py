"""Fuzzing the three POST endpoints: no input gets a 500, and nothing starts unsigned.

Signed input is fuzzed too, from raw garbage to near-valid requests built on the real fixtures:
whatever it starts must carry parameters the flows can trust (a configured app, environment and
hosts, a ref that passes ``validate_ref``, a 40-hex sha). The TestClient re-raises any server
exception, so a crash fails the test even before the status code is looked at.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st
from starlette.testclient import TestClient

from chatops.grammar import validate_ref
from chatops.request import Run
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    RecordingCreator,
    action_body,
    clear_locks,
    gateway,
    github_headers,
    save_config,
    slack_headers,
    slash_body,
    webhook_fixture,
)

PATHS = ["/slack/commands", "/slack/interactions", "/github/webhook"]
CONFIGURED = {  # what save_config() sets up: app -> environment -> hosts
    "shop": {"staging": ["web-1", "web-2"], "production": ["web-1.prod", "web-2.prod"]},
    "billing": {"staging": ["billing-1"], "production": ["billing-2"]},
    "hello": {"staging": ["hello-1"], "production": ["hello-2"]},
}
TASKS = {"shop": {"deploy", "migrate"}, "billing": {"deploy"}, "hello": {"deploy"}}
FUZZ = settings(
    max_examples=60,  # each a request through the whole gateway
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Fuzzed:
    def __init__(self, client: TestClient, slack: FakeSlack) -> None:
        self.client = client
        self.slack = slack
        self.urls = 0

    @property
    def requests(self) -> list[Run]:
        """Every run the gateway accepted (stored in its intake, to be created)."""
        jobs = self.client.app.state.intake.store.jobs()
        return [job.run for job in jobs if job.kind == "run"]

    def response_url(self) -> str:
        self.urls += 1
        return self.slack.response_url(f"fuzz-{self.urls}")


@pytest.fixture(scope="module")
def fuzzed(prefect_server: None) -> Iterator[Fuzzed]:
    save_config()
    with FakeSlack() as slack, gateway(RecordingCreator()) as client:
        yield Fuzzed(client, slack)
    clear_locks()


def assert_trustworthy(request: Run) -> None:
    """What the flows rely on: only configured targets, only validated refs and shas."""
    p = request.parameters
    assert p["environment"] in CONFIGURED[p["app"]]
    if p.get("ref") is not None:
        assert validate_ref(p["ref"]) == p["ref"]
    if p.get("sha") is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", p["sha"])
    assert set(p.get("hosts") or []) <= set(CONFIGURED[p["app"]][p["environment"]])
    assert p.get("task", "deploy") in TASKS[p["app"]]
    if p.get("deployment_id") is not None:
        assert type(p["deployment_id"]) is int and p["deployment_id"] > 0


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
headers = st.dictionaries(
    st.sampled_from(
        [
            "X-Slack-Request-Timestamp",
            "X-Slack-Signature",
            "X-Hub-Signature-256",
            "X-GitHub-Event",
            "X-GitHub-Delivery",
            "Content-Type",
            "Content-Length",
        ]
    ),
    st.one_of(
        header_text,
        st.just(str(int(time.time()))),
        st.from_regex(r"v0=[0-9a-f]{64}", fullmatch=True),
        st.from_regex(r"sha256=[0-9a-f]{64}", fullmatch=True),
        st.sampled_from(["deployment", "push", "ping", "application/json"]),
    ),
)


@FUZZ
@given(path=st.sampled_from(PATHS), body=st.binary(max_size=2000), sent_headers=headers)
def test_unsigned_requests_are_refused_and_start_nothing(
    fuzzed: Fuzzed, path: str, body: bytes, sent_headers: dict[str, str]
) -> None:
    sent_headers = {k: v for k, v in sent_headers.items() if k != "Content-Length"}
    before = len(fuzzed.requests)
    response = fuzzed.client.post(path, content=body, headers=sent_headers)
    assert response.status_code == 401
    assert len(fuzzed.requests) == before


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    body=st.binary(max_size=2000),
    event=st.sampled_from(["deployment", "push", "ping", "status", "x"]),
)
def test_signed_garbage_gets_no_500_and_starts_nothing(
    fuzzed: Fuzzed, path: str, body: bytes, event: str
) -> None:
    sent = github_headers(body, event) if path == "/github/webhook" else slack_headers(body)
    before = len(fuzzed.requests)
    response = fuzzed.client.post(path, content=body, headers=sent)
    assert response.status_code in (200, 400)
    assert len(fuzzed.requests) == before


words = st.sampled_from(
    [
        "shop",
        "billing",
        "hello",
        "ghost",
        "nosuch",
        "deploy",
        "deploy:migrate",
        "deploy!",
        "lock",
        "unlock",
        "all",
        "rollback",
        "status",
        "latest",
        "deploys",
        "where",
        "check",
        "help",
        "to",
        "in",
        "on",
        "staging",
        "production",
        "prod",
        "stg",
        "!",
        "@",
        "/",
        "..",
        ":",
        ",",
        "shop@main",
        "shop/feature/x",
        "shop@$(id)",
        "web-1",
        "web-9",
        "staging/web-1,web-2",
        "`id`",
        ";",
        "|",
        "&",
        "<!channel>",
        "\u202e",
        "\x00",
        "\t",
        "ß",
        "K",
    ]
)
refs = st.one_of(
    st.sampled_from(
        ["", "", "@main", "@v1.2", "/feature/x", "@$(id)", "@a..b", "@-x", "@x.lock", "@", "/"]
    ),
    st.from_regex(r"@[A-Za-z0-9._/+@-]{1,12}", fullmatch=True),
)
deploy_commands = st.builds(
    lambda verb, app, ref, place, env, hosts, bang: f"{verb}{app}{ref}{place}{env}{hosts}{bang}",
    st.sampled_from(["", "deploy ", "deploy:migrate ", "deploy:x ", "rollback "]),
    st.sampled_from(["shop", "shop", "billing", "hello", "ghost", "Shop", "nosuch"]),
    refs,
    st.sampled_from([" to ", " in ", " on ", " "]),
    st.sampled_from(["staging", "staging", "production", "prod", "qa", ""]),
    st.sampled_from(["", "", "", "/web-1", "/web-1,web-2", "/web-9", "/web-1;x", "/"]),
    st.sampled_from(["", "!", " !"]),
)
free_text = st.one_of(
    st.lists(words, max_size=8).map(" ".join),
    st.lists(st.one_of(words, st.text(max_size=12)), max_size=6).map(" ".join),
    st.text(max_size=300),
)


def send_command(fuzzed: Fuzzed, text: str, user: str, channel: str) -> None:
    body = slash_body(text, fuzzed.response_url(), user, channel)
    before = len(fuzzed.requests)
    response = fuzzed.client.post("/slack/commands", content=body, headers=slack_headers(body))
    assert response.status_code == 200
    tally("started a run" if len(fuzzed.requests) > before else "started nothing")
    reply = response.json()
    assert reply["response_type"] in ("ephemeral", "in_channel") and reply["text"]
    assert "Traceback" not in reply["text"]
    for request in fuzzed.requests:
        assert_trustworthy(request)


users = st.sampled_from(["U0ALICE001", "U0BOSS0001"])
channels = st.sampled_from(["C0DEPLOYS1", "C0RANDOM01"])


@FUZZ
@given(text=deploy_commands, user=users, channel=channels)
def test_signed_deploy_commands_start_only_safe_runs(
    fuzzed: Fuzzed, text: str, user: str, channel: str
) -> None:
    send_command(fuzzed, text, user, channel)


@FUZZ
@given(text=free_text, user=users, channel=channels)
def test_signed_free_text_commands_always_get_a_reply(
    fuzzed: Fuzzed, text: str, user: str, channel: str
) -> None:
    send_command(fuzzed, text, user, channel)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
button_values = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=50),
    st.fixed_dictionaries(
        {
            "app": st.sampled_from(["shop", "nosuch", "../x", ""]),
            "environment": st.sampled_from(["staging", "production", "$(x)"]),
        },
        optional={
            "ref": st.one_of(st.sampled_from(["main", "..", "-x"]), json_values),
            "hosts": st.one_of(st.lists(st.sampled_from(["web-1", "web-9", "a;b"])), json_values),
            "task": st.one_of(st.sampled_from(["migrate", "x"]), json_values),
        },
    ).map(json.dumps),
)


@FUZZ
@given(
    action_id=st.sampled_from(["rollback", "deploy_anyway", "view_run", "other"]),
    value=button_values,
)
def test_signed_button_clicks_start_only_safe_runs(
    fuzzed: Fuzzed, action_id: str, value: str
) -> None:
    body = action_body(action_id, value, fuzzed.response_url())
    response = fuzzed.client.post("/slack/interactions", content=body, headers=slack_headers(body))
    assert response.status_code == 200
    for request in fuzzed.requests:
        assert_trustworthy(request)


@FUZZ
@given(payload=json_values)
def test_signed_random_interaction_payloads_get_no_500(fuzzed: Fuzzed, payload: Any) -> None:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    response = fuzzed.client.post("/slack/interactions", content=body, headers=slack_headers(body))
    assert response.status_code in (200, 400)
    for request in fuzzed.requests:
        assert_trustworthy(request)


def mutated(name: str, path: list[str], value: Any) -> bytes:
    payload = json.loads(webhook_fixture(name))
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(payload).encode()


deployment_fields = st.sampled_from(
    [
        ["action"],
        ["deployment", "id"],
        ["deployment", "sha"],
        ["deployment", "ref"],
        ["deployment", "environment"],
        ["deployment", "task"],
        ["deployment", "payload"],
        ["deployment", "creator"],
        ["deployment"],
        ["repository", "full_name"],
        ["repository"],
    ]
)
push_fields = st.sampled_from(
    [["ref"], ["after"], ["deleted"], ["repository", "full_name"], ["pusher"], ["repository"]]
)
field_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "refs/heads/master",
            "refs/tags/v1",
            "master",
            "$(reboot)",
            "../x",
            "0" * 40,
            "f" * 40,
            "production",
            "staging",
            "Codertocat/Hello-World",
            "deploy:migrate",
            True,
            False,
            7,
        ]
    ),
)


@FUZZ
@given(data=st.data())
def test_signed_near_valid_webhooks_get_no_500_and_start_only_safe_runs(
    fuzzed: Fuzzed, data: st.DataObject
) -> None:
    event = data.draw(st.sampled_from(["deployment", "push"]))
    base = "deployment" if event == "deployment" else "push.with-new-branch"
    fields = deployment_fields if event == "deployment" else push_fields
    body = mutated(base, data.draw(fields), data.draw(field_values))
    response = fuzzed.client.post(
        "/github/webhook", content=body, headers=github_headers(body, event)
    )
    assert response.status_code in (200, 202, 400, 409, 422)
    tally(f"HTTP {response.status_code}")
    for request in fuzzed.requests:
        assert_trustworthy(request)


@FUZZ
@given(payload=json_values, event=st.sampled_from(["deployment", "push", "ping", "status"]))
def test_signed_random_json_webhooks_get_no_500(fuzzed: Fuzzed, payload: Any, event: str) -> None:
    body = json.dumps(payload).encode()
    response = fuzzed.client.post(
        "/github/webhook", content=body, headers=github_headers(body, event)
    )
    assert response.status_code in (200, 400)
    for request in fuzzed.requests:
        assert_trustworthy(request)


def test_fuzzing_reached_the_run_starting_code(fuzzed: Fuzzed) -> None:
    """Guards the fuzzers above: valid requests through the same client do start runs."""
    # A lock a fuzz case (or an earlier test) left would refuse the deploy: lift them all first.
    unlock = slash_body("unlock all!", fuzzed.response_url(), "U0ALICE001")
    fuzzed.client.post("/slack/commands", content=unlock, headers=slack_headers(unlock))
    before = len(fuzzed.requests)
    body = slash_body("shop@main to staging", fuzzed.response_url(), "U0ALICE001")
    reply = fuzzed.client.post("/slack/commands", content=body, headers=slack_headers(body)).json()
    # started ("… is deploying", in the channel) or queued behind fuzz cases: accepted either way
    accepted = reply["response_type"] == "in_channel" or reply["text"].startswith(":hourglass:")
    assert accepted, reply["text"]
    event = json.loads(webhook_fixture("deployment"))
    event["deployment"]["id"] = time.time_ns() % 10**9  # a deployment no fuzz case sent
    hook = json.dumps(event).encode()
    assert (
        fuzzed.client.post(
            "/github/webhook", content=hook, headers=github_headers(hook, "deployment")
        ).status_code
        == 202
    )
    assert len(fuzzed.requests) == before + 2
    for request in fuzzed.requests:
        assert_trustworthy(request)
    assert fuzzed.slack.violations == []
