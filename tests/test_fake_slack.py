"""The fake Slack Web API, driven by the real slack_sdk clients and checked against Slack's spec.

If these pass, a test that uses ``fake_slack`` talks to something that answers like Slack: same
status codes, same error strings, same response shapes, same Block Kit limits.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from tests.fakes import FIXTURES as SHARED_FIXTURES
from tests.fakes.slack_api import (
    ERRORS_NEWER_THAN_SPEC,
    FakeSlack,
    block_kit_problems,
    response_problems,
    spec_errors,
)

FIXTURES = SHARED_FIXTURES / "slack"
CHANNEL = "C0DEPLOYS01"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def client_for(fake: FakeSlack, **kwargs: Any) -> WebClient:
    return WebClient(token=fake.token, base_url=fake.api_url, timeout=5, **kwargs)


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def client(fake_slack: FakeSlack) -> WebClient:
    return client_for(fake_slack)


# --------------------------------------------------------------------------- the spec itself
@pytest.mark.parametrize(
    ("method", "example"),
    [
        ("chat.postMessage", "chat.postMessage.200.json"),
        ("chat.postMessage", "chat.postMessage.error.json"),
        ("chat.postMessage", "chat.postMessage.error.channel_not_found.json"),
        ("chat.update", "chat.update.200.json"),
        ("chat.update", "chat.update.error.json"),
    ],
)
def test_slack_examples_validate_against_the_spec(method: str, example: str) -> None:
    assert response_problems(method, fixture(example)) == []


def test_the_429_body_is_only_legal_through_the_newer_errors() -> None:
    body = fixture("ratelimited.429.json")["body"]
    assert body["error"] not in spec_errors("chat.postMessage")  # the 2021 spec predates it
    assert body["error"] in ERRORS_NEWER_THAN_SPEC
    assert response_problems("chat.postMessage", body) == []


@pytest.mark.parametrize(
    ("method", "example"),
    [("chat.postMessage", "chat.postMessage.200.json"), ("chat.update", "chat.update.200.json")],
)
def test_slack_sdk_parses_slacks_own_examples(
    fake_slack: FakeSlack, client: WebClient, method: str, example: str
) -> None:
    body = fixture(example)
    fake_slack.fail_next(method, body=body)  # answer with Slack's example verbatim
    call = client.chat_postMessage if method == "chat.postMessage" else client.chat_update
    kwargs = {"ts": body["ts"]} if method == "chat.update" else {}
    response = call(channel=body["channel"], text="x", **kwargs)
    assert (response["channel"], response["ts"]) == (body["channel"], body["ts"])
    assert fake_slack.violations == []


# --------------------------------------------------------------------------- happy paths
def test_post_then_update_keeps_one_message_with_history(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    posted = client.chat_postMessage(
        channel=CHANNEL, text="deploying", blocks=[{"type": "divider"}]
    )
    assert posted["channel"] == CHANNEL
    assert posted["message"]["blocks"][0]["type"] == "divider"
    client.chat_update(channel=CHANNEL, ts=posted["ts"], text="deployed")

    message = fake_slack.messages[(CHANNEL, posted["ts"])]
    assert (message.text, message.blocks, message.updates) == ("deployed", [{"type": "divider"}], 1)
    assert [v.text for v in message.history] == ["deploying", "deployed"]
    assert [c.method for c in fake_slack.calls] == ["chat.postMessage", "chat.update"]
    assert fake_slack.calls[0].json["blocks"] == [{"type": "divider"}]
    assert fake_slack.violations == []


def test_timestamps_look_like_slacks(fake_slack: FakeSlack, client: WebClient) -> None:
    first = client.chat_postMessage(channel=CHANNEL, text="a")["ts"]
    second = client.chat_postMessage(channel=CHANNEL, text="b")["ts"]
    assert len(first) == 17 and first[10] == "." and first < second


def test_thread_replies_are_stored_under_their_parent(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="card")["ts"]
    reply = client.chat_postMessage(channel=CHANNEL, text="log", thread_ts=parent)
    assert reply["message"]["thread_ts"] == parent
    assert [m.text for m in fake_slack.replies(CHANNEL, parent)] == ["log"]
    assert [m.ts for m in fake_slack.top_level(CHANNEL)] == [parent]
    assert fake_slack.violations == []


def test_channel_names_resolve_to_ids_for_post_but_not_update(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="#deploys", text="hi")
    assert posted["channel"] == fake_slack.channel_id("#deploys")
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="#deploys", ts=posted["ts"], text="x")
    assert raised.value.response["error"] == "channel_not_found"
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="x")
    assert fake_slack.violations == []


def test_post_ephemeral_and_auth_test(fake_slack: FakeSlack, client: WebClient) -> None:
    response = client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE001", text="only you")
    assert response["message_ts"]
    assert fake_slack.ephemerals[0]["user"] == "U0ALICE001"
    assert client.auth_test()["bot_id"].startswith("B")
    assert fake_slack.violations == []


def test_form_encoded_requests_work_like_json(fake_slack: FakeSlack) -> None:
    blocks = json.dumps([{"type": "divider"}])
    form = f"token={fake_slack.token}&channel={CHANNEL}&text=a+b%26c&blocks={blocks}"
    status, _, body = raw_post(
        fake_slack.api_url + "chat.postMessage",
        form.encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = json.loads(body)
    assert status == 200 and answer["ok"] is True
    assert fake_slack.messages[(CHANNEL, answer["ts"])].text == "a b&c"
    assert fake_slack.messages[(CHANNEL, answer["ts"])].blocks == [{"type": "divider"}]
    assert fake_slack.violations == []


def test_sdk_form_api_call_is_accepted(fake_slack: FakeSlack, client: WebClient) -> None:
    response = client.api_call("chat.postMessage", data={"channel": CHANNEL, "text": "form"})
    assert fake_slack.messages[(CHANNEL, response["ts"])].text == "form"


# --------------------------------------------------------------------------- Slack's errors
@pytest.mark.parametrize(("token", "error"), [("xoxb-wrong", "invalid_auth"), (None, "not_authed")])
def test_bad_tokens_are_refused(fake_slack: FakeSlack, token: str | None, error: str) -> None:
    client = WebClient(token=token, base_url=fake_slack.api_url, timeout=5)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="x")
    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == error
    assert fake_slack.messages == {}
    assert fake_slack.violations == []


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize(
    ("method", "kwargs", "error"),
    [
        ("chat_postMessage", {"channel": "C0UNKNOWN01", "text": "x"}, "channel_not_found"),
        ("chat_postMessage", {"channel": CHANNEL}, "no_text"),
        ("chat_postMessage", {"channel": CHANNEL, "text": "x" * 40_001}, "msg_too_long"),
        (
            "chat_update",
            {"channel": CHANNEL, "ts": "1700000000.000001", "text": "x"},
            "message_not_found",
        ),
        (
            "chat_postEphemeral",
            {"channel": CHANNEL, "user": "", "text": "x"},
            "user_not_in_channel",
        ),
    ],
)
def test_errors_come_as_http_200_with_spec_error_strings(
    fake_slack: FakeSlack, client: WebClient, method: str, kwargs: dict[str, Any], error: str
) -> None:
    fake_slack.channels = {CHANNEL}
    with pytest.raises(SlackApiError) as raised:
        getattr(client, method)(**kwargs)
    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == error
    assert error in spec_errors(method.replace("_", "."))
    assert fake_slack.violations == []


def test_injected_error_is_raised_with_its_error_string(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    fake_slack.fail_next("chat.update", error="cant_update_message")
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts="1700000000.000001", text="x")
    assert raised.value.response["error"] == "cant_update_message"
    assert fake_slack.violations == []


def test_invalid_blocks_are_refused_and_recorded(fake_slack: FakeSlack, client: WebClient) -> None:
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[header])
    assert raised.value.response["error"] == "invalid_blocks"
    assert fake_slack.violations == ["Block Kit: blocks[0].text: 151 characters > 150"]


def test_bad_json_body_is_invalid_json(fake_slack: FakeSlack) -> None:
    status, _, body = raw_post(
        fake_slack.api_url + "chat.update",
        b"{not json",
        {"Content-Type": "application/json", "Authorization": f"Bearer {fake_slack.token}"},
    )
    assert (status, json.loads(body)) == (200, {"ok": False, "error": "invalid_json"})


# --------------------------------------------------------------------------- rate limits, 5xx
def test_429_is_exactly_the_sdk_fixture(fake_slack: FakeSlack) -> None:
    expected = fixture("ratelimited.429.json")
    fake_slack.fail_next("chat.postMessage", status=429)
    status, headers, body = raw_post(
        fake_slack.api_url + "chat.postMessage",
        json.dumps({"channel": CHANNEL, "text": "x"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {fake_slack.token}"},
    )
    assert status == expected["status"]
    assert headers["Retry-After"] == expected["headers"]["Retry-After"]
    assert json.loads(body) == expected["body"]


def test_429_without_retry_handler_raises(fake_slack: FakeSlack, client: WebClient) -> None:
    fake_slack.fail_next("chat.postMessage", retry_after=0)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="x")
    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    assert fake_slack.violations == []


def test_429_is_retried_by_the_rate_limit_handler(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack, retry_handlers=[RateLimitErrorRetryHandler()])
    fake_slack.fail_next("chat.postMessage", retry_after=0)
    started = time.monotonic()
    ts = client.chat_postMessage(channel=CHANNEL, text="x")["ts"]
    assert time.monotonic() - started < 2  # Retry-After 0 + up to 1 s jitter
    assert [c.status for c in fake_slack.calls] == [429, 200]
    assert fake_slack.messages[(CHANNEL, ts)].text == "x"
    assert fake_slack.violations == []


def test_500_is_an_html_page_and_retried_by_the_server_error_handler(
    fake_slack: FakeSlack,
) -> None:
    fake_slack.fail_next("chat.postMessage", status=500)
    with pytest.raises(SlackApiError) as raised:
        client_for(fake_slack).chat_postMessage(channel=CHANNEL, text="x")
    assert raised.value.response.status_code == 500
    assert "non-JSON" in raised.value.response["error"]

    fast = FixedValueRetryIntervalCalculator(0.01)
    retrying = client_for(fake_slack, retry_handlers=[ServerErrorRetryHandler(1, fast)])
    fake_slack.fail_next("chat.postMessage", status=503)
    assert retrying.chat_postMessage(channel=CHANNEL, text="x")["ok"]
    assert [c.status for c in fake_slack.calls] == [500, 503, 200]


def test_delay_makes_the_client_time_out(fake_slack: FakeSlack) -> None:
    fake_slack.delay(2, times=1)
    client = WebClient(token=fake_slack.token, base_url=fake_slack.api_url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=CHANNEL, text="x")
    assert time.monotonic() - started < 1.5


# --------------------------------------------------------------------------- violations
def test_a_broken_success_response_is_flagged(fake_slack: FakeSlack, client: WebClient) -> None:
    fake_slack.fail_next("chat.postMessage", body={"ok": True, "ts": "not-a-ts"})
    client.chat_postMessage(channel=CHANNEL, text="x")  # the SDK itself does not mind
    assert any("'channel' is a required property" in v for v in fake_slack.violations)
    assert any("ts: 'not-a-ts' does not match" in v for v in fake_slack.violations)


def test_an_error_string_outside_the_spec_is_flagged(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    fake_slack.fail_next("chat.update", error="no_such_error")
    with pytest.raises(SlackApiError):
        client.chat_update(channel=CHANNEL, ts="1700000000.000001", text="x")
    assert len(fake_slack.violations) == 1
    assert "'no_such_error' is not one of" in fake_slack.violations[0]


def test_unknown_arguments_and_methods_are_flagged(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    client.api_call("chat.postMessage", json={"channel": CHANNEL, "text": "x", "thred_ts": "1"})
    with pytest.raises(SlackApiError):
        client.api_call("chat.scheduleMessage", json={"channel": CHANNEL, "text": "x"})
    assert fake_slack.violations == [
        "chat.postMessage: argument 'thred_ts' is not in the spec",
        "unknown Web API method 'chat.scheduleMessage' (not modelled by the fake)",
    ]


# --------------------------------------------------------------------------- Block Kit checks
def test_upstream_block_kit_examples_pass() -> None:
    examples = fixture("block_kit.upstream_examples.json")
    buttons = [examples["button_element"], examples["link_button_element"]]
    primary = {**examples["button_element_primary"], "action_id": "save"}
    primary["confirm"] = examples["confirm_object_to_dict"]
    blocks = [
        examples["section_mrkdwn"],
        examples["section_fields"],
        examples["header"],
        examples["divider"],
        {"type": "actions", "elements": [*buttons, primary]},
    ]
    assert block_kit_problems(blocks) == []
    assert (
        block_kit_problems(fixture("block_kit.deploy_notification.composed.json")["blocks"]) == []
    )


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(**extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": "Go"},
        "action_id": "go",
        **extra,
    }


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ([_section("x" * 3001)], "3001 characters > 3000"),
        ([{"type": "divider"}] * 51, "51 blocks > 50"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "must be plain_text"),
        ([{"type": "actions", "elements": [_button(style="blue")]}], "'blue' not primary/danger"),
        ([{"type": "actions", "elements": [_button(), _button()]}], "duplicate action_id"),
        ([{"type": "image", "image_url": "http://x/y.png"}], "block type 'image'"),
        ([{**_section("x"), "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "at most 10"),
        ([{**_section("x"), "colour": "red"}], "does not round-trip"),
        ([_section("")], "non-empty"),
        ([{**_section("a"), "block_id": "b"}, {**_section("c"), "block_id": "b"}], "duplicate"),
    ],
)
def test_block_kit_violations_are_found(blocks: list[dict[str, Any]], problem: str) -> None:
    problems = block_kit_problems(blocks)
    assert any(problem in p for p in problems), problems


# --------------------------------------------------------------------------- response_url
def test_response_url_records_what_the_webhook_client_sends(fake_slack: FakeSlack) -> None:
    url = fake_slack.response_url("deploy-cmd")
    response = WebhookClient(url).send(
        text="Deploying shop", response_type="in_channel", replace_original=False
    )
    assert (response.status_code, response.body) == (200, "ok")
    assert fake_slack.responses("deploy-cmd") == [
        {"text": "Deploying shop", "response_type": "in_channel", "replace_original": False}
    ]
    assert fake_slack.violations == []


def test_response_url_refuses_bad_payloads(fake_slack: FakeSlack) -> None:
    webhook = WebhookClient(fake_slack.response_url("cmd"))
    assert webhook.send(response_type="ephemeral").body == "no_text"
    bad = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 200}}]
    assert webhook.send(text="x", blocks=bad).status_code == 400
    assert fake_slack.responses("cmd") == []
    assert len(fake_slack.violations) == 2


def test_response_url_is_good_for_five_uses(fake_slack: FakeSlack) -> None:
    webhook = WebhookClient(fake_slack.response_url("cmd"))
    statuses = [webhook.send(text=str(i)).status_code for i in range(6)]
    assert statuses == [200] * 5 + [404]
    assert len(fake_slack.responses("cmd")) == 5
    assert len(fake_slack.violations) == 1


def test_response_url_fault_injection(fake_slack: FakeSlack) -> None:
    webhook = WebhookClient(fake_slack.response_url("cmd"))
    fake_slack.fail_next("response_url", status=500)
    assert webhook.send(text="x").status_code == 500
    assert webhook.send(text="x").status_code == 200
    assert fake_slack.violations == []
