"""adapters/slack.py and render/slack_card.py against the fake Slack: one card per deploy, updated
in place, never fatal."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from adapters.slack import (
    BoundedRateLimitRetryHandler,
    post_deploy_message,
    post_message,
    slack_client,
    update_deploy_message,
)
from blocks.slack import SlackAccess
from model.summary import DeploySummary, SlotHolder, Step
from render.slack_card import clip, escape_mrkdwn, render_deploy_message
from tests.fakes.slack_api import FakeSlack, block_kit_problems

CHANNEL = "C0DEPLOYS01"
SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
STEPS = ["record deployment", "checkout", "build", "upload", "activate", "health check"]
HOSTILE = ["<!channel>", "<!here>", "<@U0123ABCD>", "<https://evil.example|click>"]


def make_progress(**changes: Any) -> DeploySummary:
    """The card of a deploy of shop@feature-x to staging; ``changes`` override its fields."""
    summary = DeploySummary(
        app="shop",
        environment="staging",
        ref="feature-x",
        sha=SHA,
        requested_by="U0ALICE001",
        run_url="http://127.0.0.1:4200/runs/flow-run/5f1c2d9e",
        environment_url="https://staging.example.com/shop",
        hosts=["web-1", "web-2"],
        steps=[Step(n) for n in STEPS],
        deployment_id=42,
    )
    return replace(summary, **changes)


def change(summary: DeploySummary, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(summary, name, value)


def fast_retries(client: WebClient) -> WebClient:
    """Keep slack_client's retry policy but without the back-off sleeps."""
    for handler in client.retry_handlers:
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0.01)
    return client


@pytest.fixture
def access(fake_slack: FakeSlack) -> SlackAccess:
    return SlackAccess(bot_token=fake_slack.token, api_url=fake_slack.api_url)


@pytest.fixture
def client(access: SlackAccess) -> WebClient:
    return fast_retries(slack_client(access))


@pytest.fixture
def warnings_(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger="prefect.adapters.slack")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "prefect.adapters.slack"]


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    actions = [b for b in blocks if b["type"] == "actions"]
    return {e["action_id"]: e for b in actions for e in b["elements"]}


def block(blocks: list[dict[str, Any]], block_id: str) -> dict[str, Any] | None:
    return next((b for b in blocks if b.get("block_id") == block_id), None)


def everything_shown(text: str, blocks: list[dict[str, Any]]) -> str:
    return text + json.dumps(blocks, ensure_ascii=False)


# --------------------------------------------------------------------------- client
def test_slack_client_uses_the_block_and_retries_what_matters(access: SlackAccess) -> None:
    client = slack_client(access)
    assert client.base_url == access.api_url
    assert client.token == access.bot_token.get_secret_value()
    assert client.timeout <= 10
    kinds = {type(h).__name__ for h in client.retry_handlers}
    assert kinds == {
        "ConnectionErrorRetryHandler",
        "BoundedRateLimitRetryHandler",
        "ServerErrorRetryHandler",
    }


# --------------------------------------------------------------------------- the deploy story
def test_card_is_posted_once_and_updated_in_place_until_success(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    progress = make_progress()
    ts = post_deploy_message(client, CHANNEL, progress)
    assert ts is not None
    for step in progress.steps:
        step.state = "running"
        update_deploy_message(client, CHANNEL, ts, progress)
        change(step, state="done", seconds=1.5)
        update_deploy_message(client, CHANNEL, ts, progress)
    progress.outcome = "success"
    update_deploy_message(client, CHANNEL, ts, progress)

    assert [m.ts for m in fake_slack.top_level()] == [ts]
    message = fake_slack.messages[(CHANNEL, ts)]
    assert message.updates == 2 * len(STEPS) + 1
    assert "success" in message.text and "shop@feature-x (1a2b3c4) → staging" in message.text
    assert (
        ":white_check_mark: *Deployed*" in block(message.blocks, "deploy_summary")["text"]["text"]
    )
    rollback = buttons(message.blocks)["rollback"]
    assert json.loads(rollback["value"]) == {"app": "shop", "environment": "staging"}
    assert rollback["style"] == "danger" and rollback["confirm"]["confirm"]["text"] == "Roll back"
    assert buttons(message.blocks)["view_run"]["url"] == progress.run_url
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.violations == []


def test_first_version_shows_pending_steps_and_abort_not_rollback(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    ts = post_deploy_message(client, CHANNEL, make_progress())
    blocks = fake_slack.messages[(CHANNEL, ts)].blocks
    assert block(blocks, "deploy_header")["text"]["text"] == "shop@feature-x (1a2b3c4) → staging"
    assert block(blocks, "deploy_steps")["text"]["text"].count(":white_circle:") == len(STEPS)
    assert set(buttons(blocks)) == {"view_run", "abort"}
    abort = buttons(blocks)["abort"]
    assert json.loads(abort["value"]) == {"app": "shop", "environment": "staging"}
    assert abort["style"] == "danger" and abort["confirm"]["confirm"]["text"] == "Abort"
    assert "in progress" in fake_slack.messages[(CHANNEL, ts)].text


def test_a_waiting_deploy_names_the_holder_and_the_abort_until_it_holds_the_slot(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    holder = SlotHolder(
        run_id="7c0ffee0",
        title="shop@slow → staging",
        kind="deploy",
        app="shop",
        environment="staging",
        ref="slow",
        requested_by="U0ALICE001",
        since="2026-12-07T10:42:03+00:00",
        run_url="http://127.0.0.1:4200/runs/flow-run/7c0ffee0",
    )
    progress = make_progress(waiting_for=holder)
    ts = post_deploy_message(client, CHANNEL, progress)
    line = block(fake_slack.messages[(CHANNEL, ts)].blocks, "deploy_waiting")
    assert line is not None and line["type"] == "context"
    assert line["elements"][0]["text"] == (
        ":hourglass: Waiting for <http://127.0.0.1:4200/runs/flow-run/7c0ffee0|shop@slow → "
        "staging> (deploy of shop@slow by <@U0ALICE001> since 10:42 UTC) — abort it with "
        "`/deploy abort shop in staging`"
    )
    progress.waiting_for = None
    update_deploy_message(client, CHANNEL, ts, progress)
    assert block(fake_slack.messages[(CHANNEL, ts)].blocks, "deploy_waiting") is None
    assert fake_slack.violations == []


def test_a_holder_named_by_hostile_text_pings_nobody() -> None:
    holder = SlotHolder("x", "<!channel>", "deploy", "shop", "staging", "<!here>", "<!channel>", "")
    _, blocks = render_deploy_message(make_progress(waiting_for=holder))
    text = block(blocks, "deploy_waiting")["elements"][0]["text"]
    assert "<!" not in text and "&lt;!channel&gt;" in text


def test_failure_shows_an_error_excerpt_and_no_rollback(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    progress = make_progress()
    ts = post_deploy_message(client, CHANNEL, progress)
    change(progress.steps[2], state="failed", seconds=12.0)
    error = "[ERROR] COMPILATION ERROR\nShop.java:[12,5] cannot find symbol\n" + "at x\n" * 40
    change(progress, outcome="failure", error=error)
    update_deploy_message(client, CHANNEL, ts, progress)

    message = fake_slack.messages[(CHANNEL, ts)]
    excerpt = block(message.blocks, "deploy_error")["text"]["text"]
    assert "Shop.java:[12,5] cannot find symbol" in excerpt
    assert excerpt.count("at x") < 40 and excerpt.endswith("…```")
    assert ":x: build  _failed_  `12s`" in block(message.blocks, "deploy_steps")["text"]["text"]
    assert "failure" in message.text
    assert "rollback" not in buttons(message.blocks)
    assert fake_slack.violations == []


def test_card_can_live_in_a_thread_and_replies_go_under_it(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="/deploy shop/feature-x to staging")
    ts = post_deploy_message(client, CHANNEL, make_progress(), thread_ts=parent["ts"])
    reply = post_message(client, CHANNEL, "Build log: <!channel> & done", thread_ts=parent["ts"])
    assert fake_slack.messages[(CHANNEL, ts)].thread_ts == parent["ts"]
    texts = [m.text for m in fake_slack.replies(CHANNEL, parent["ts"])]
    assert texts[1] == "Build log: &lt;!channel&gt; &amp; done"
    assert reply == fake_slack.replies(CHANNEL, parent["ts"])[1].ts
    assert fake_slack.violations == []


def test_nothing_happens_without_a_ts(fake_slack: FakeSlack, client: WebClient) -> None:
    update_deploy_message(client, CHANNEL, None, make_progress())
    assert fake_slack.calls == []


# --------------------------------------------------------------------------- Slack trouble
def test_channel_not_found_is_logged_not_raised(
    fake_slack: FakeSlack, client: WebClient, warnings_: Callable[[], list[str]]
) -> None:
    fake_slack.channels = {CHANNEL}
    assert post_deploy_message(client, "C0ELSEWHERE", make_progress()) is None
    update_deploy_message(client, "C0ELSEWHERE", "1700000000.000001", make_progress())
    assert post_message(client, "C0ELSEWHERE", "x", thread_ts="1700000000.000001") is None
    assert len(warnings_()) == 3
    assert all("channel_not_found" in w for w in warnings_())
    assert fake_slack.violations == []


def test_channel_name_works_for_post_but_update_needs_the_id(
    fake_slack: FakeSlack, client: WebClient, warnings_: Callable[[], list[str]]
) -> None:
    ts = post_deploy_message(client, "#deploys", make_progress())
    update_deploy_message(client, "#deploys", ts, make_progress(outcome="success"))
    assert "channel_not_found" in warnings_()[0]
    update_deploy_message(client, fake_slack.channel_id("#deploys"), ts, make_progress())
    assert fake_slack.message(ts).updates == 1


def test_429_is_retried_after_retry_after(fake_slack: FakeSlack, client: WebClient) -> None:
    ts = post_deploy_message(client, CHANNEL, make_progress())
    fake_slack.fail_next("chat.update", retry_after=0)
    update_deploy_message(client, CHANNEL, ts, make_progress(outcome="success"))
    assert [c.status for c in fake_slack.calls_to("chat.update")] == [429, 200]
    assert "success" in fake_slack.messages[(CHANNEL, ts)].text


def test_long_retry_after_is_not_waited_for(
    fake_slack: FakeSlack, client: WebClient, warnings_: Callable[[], list[str]]
) -> None:
    fake_slack.fail_next("chat.postMessage", retry_after=60)
    started = time.monotonic()
    assert post_deploy_message(client, CHANNEL, make_progress()) is None
    assert time.monotonic() - started < 2
    assert "ratelimited (HTTP 429)" in warnings_()[0]


def test_persistent_429_gives_up_after_two_retries(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    fake_slack.fail_next("chat.postMessage", retry_after=0, times=5)
    assert post_deploy_message(client, CHANNEL, make_progress()) is None
    assert [c.status for c in fake_slack.calls] == [429, 429, 429]


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(fake_slack: FakeSlack, client: WebClient, status: int) -> None:
    fake_slack.fail_next("chat.postMessage", status=status)
    ts = post_deploy_message(client, CHANNEL, make_progress())
    assert ts is not None and [c.status for c in fake_slack.calls] == [status, 200]


def test_a_500_that_persists_is_logged_not_raised(
    fake_slack: FakeSlack, client: WebClient, warnings_: Callable[[], list[str]]
) -> None:
    fake_slack.fail_next("chat.postMessage", status=500, times=10)
    assert post_deploy_message(client, CHANNEL, make_progress()) is None
    assert len(fake_slack.calls) == 3
    assert "HTTP 500" in warnings_()[0]


def test_unreachable_slack_is_logged_not_raised(warnings_: Callable[[], list[str]]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: connection refused
    access = SlackAccess(bot_token="xoxb-unreachable", api_url=f"http://127.0.0.1:{port}/api/")
    client = fast_retries(slack_client(access))
    assert post_deploy_message(client, CHANNEL, make_progress()) is None
    assert "URLError" in warnings_()[0]


def test_a_hanging_slack_times_out_and_is_logged(
    fake_slack: FakeSlack, access: SlackAccess, warnings_: Callable[[], list[str]]
) -> None:
    fake_slack.delay(5)
    client = fast_retries(slack_client(access, timeout=1))
    started = time.monotonic()
    assert post_deploy_message(client, CHANNEL, make_progress()) is None
    assert time.monotonic() - started < 3
    assert "timed out" in warnings_()[0]


def test_the_token_never_reaches_the_logs(
    fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "xoxb-1111-2222-sEcReTsEcReT"
    wrong = fast_retries(slack_client(SlackAccess(bot_token=secret, api_url=fake_slack.api_url)))
    assert post_deploy_message(wrong, CHANNEL, make_progress()) is None  # invalid_auth
    fake_slack.fail_next("chat.update", status=500, times=3)
    update_deploy_message(wrong, CHANNEL, "1700000000.000001", make_progress())
    post_message(wrong, CHANNEL, f"leaked {secret} here", thread_ts="1700000000.000001")
    assert "invalid_auth" in caplog.text
    assert secret not in caplog.text
    assert all(secret not in json.dumps(c.json) for c in fake_slack.calls)  # not even redacted text
    assert secret not in repr(SlackAccess(bot_token=secret))


# --------------------------------------------------------------------------- hostile input
def test_hostile_text_is_escaped_everywhere(fake_slack: FakeSlack, client: WebClient) -> None:
    progress = make_progress(
        ref="<!channel>",
        requested_by="<@U0123ABCD> & friends",
        hosts=["<!here>", "web-2"],
        environment_url="javascript:alert(1)",
        outcome="failure",
        error="deploy of <https://evil.example|click> failed <!channel>",
    )
    progress.steps[0].name = "<@U0123ABCD>"
    text, blocks = render_deploy_message(progress)
    shown = everything_shown(text, blocks)
    header = block(blocks, "deploy_header")["text"]["text"]
    for hostile in HOSTILE:
        assert hostile not in shown.replace(header, "")  # plain_text headers are never parsed
    assert "&lt;!channel&gt;" in shown and "&amp; friends" in shown
    assert "javascript:" not in shown
    ts = post_deploy_message(client, CHANNEL, progress)
    assert ts is not None and fake_slack.violations == []


def test_very_long_text_is_clipped_within_block_kit_limits(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    progress = make_progress(
        app="a" * 300,
        ref="r&" * 2000,
        hosts=[f"web-{i}" for i in range(500)],
        requested_by="x" * 5000,
        outcome="error",
        error="<>&" * 10_000,
    )
    progress.steps = [Step("s&" * 100, "done", 3600.0) for _ in range(40)]
    text, blocks = render_deploy_message(progress)
    assert block_kit_problems(blocks) == []
    assert len(block(blocks, "deploy_header")["text"]["text"]) == 150
    assert len(text) <= 4000
    assert "(+492 more)" in json.dumps(blocks)
    assert post_deploy_message(client, CHANNEL, progress) is not None
    assert fake_slack.violations == []


def test_a_card_without_sha_steps_or_urls_still_renders(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    progress = make_progress(sha=None, steps=[], run_url=None, environment_url=None, hosts=[])
    text, blocks = render_deploy_message(progress)
    assert block(blocks, "deploy_header")["text"]["text"] == "shop@feature-x → staging"
    assert [b["block_id"] for b in blocks] == ["deploy_header", "deploy_summary", "deploy_actions"]
    assert set(buttons(blocks)) == {"abort"}  # no run link to view yet
    assert post_deploy_message(client, CHANNEL, progress) is not None
    assert fake_slack.violations == []


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.42, "0.4s"), (42.0, "42s"), (123.0, "2m 03s"), (3720.0, "1h 02m")]
)
def test_step_timings_read_naturally(seconds: float, shown: str) -> None:
    progress = make_progress()
    change(progress.steps[0], state="done", seconds=seconds)
    _, blocks = render_deploy_message(progress)
    assert f"record deployment  `{shown}`" in block(blocks, "deploy_steps")["text"]["text"]


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="<>&;a!@` \n", max_size=400), limit=st.integers(5, 300))
def test_escaped_and_clipped_text_never_leaks_markup(text: str, limit: int) -> None:
    shown = clip(escape_mrkdwn(text), limit)
    assert len(shown) <= limit
    assert "<" not in shown and ">" not in shown
    tail = shown[shown.rfind("&") :] if "&" in shown else ""
    assert not tail or tail.startswith(("&amp;", "&lt;", "&gt;"))


def test_bounded_rate_limit_handler_is_exported_for_reuse() -> None:
    assert BoundedRateLimitRetryHandler().max_wait == 10.0


def test_red_checks_offer_deploy_anyway_with_the_same_parameters(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    again = {
        "app": "shop",
        "environment": "staging",
        "ref": "feature-x",
        "hosts": None,
        "task": "deploy",
    }
    progress = make_progress(
        outcome="failure",
        force_parameters=again,
        error="ChecksNotGreen: Required checks are not green: ci (failure)",
    )
    ts = post_deploy_message(client, CHANNEL, progress)
    button = buttons(fake_slack.messages[(CHANNEL, ts)].blocks)["deploy_anyway"]
    assert json.loads(button["value"]) == again
    assert button["confirm"]["confirm"]["text"] == "Deploy anyway"
    assert "deploy_anyway" not in buttons(
        render_deploy_message(make_progress(outcome="failure", error="BuildFailed"))[1]
    )
    assert fake_slack.violations == []
