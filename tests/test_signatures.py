"""Request signatures: only requests Slack or GitHub signed with our secret get through."""

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from chatops.signatures import (
    SignatureError,
    sign_github,
    sign_slack,
    verify_github,
    verify_slack,
)
from tests.fakes import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES
SLACK = json.loads((FIXTURES / "slack/signature_test_vector.json").read_text())
GITHUB = json.loads((FIXTURES / "github_webhooks/github_webhook_signature_vector.json").read_text())

SLACK_SECRET = SLACK["signing_secret"]
SLACK_BODY = SLACK["body"].encode()
SLACK_TS = int(SLACK["timestamp"])
GITHUB_SECRET = GITHUB["secret"]
GITHUB_BODY = GITHUB["payload"].encode()
GITHUB_HEADER = GITHUB["expected_header"]["X-Hub-Signature-256"]


def slack_headers(timestamp: str = SLACK["timestamp"], signature: str | None = None) -> dict:
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or SLACK["expected_signature"],
    }


def refusal(check, *args, **kwargs) -> str:
    """Run a verifier that must refuse; return its reason after checking it leaks nothing."""
    with pytest.raises(SignatureError) as caught:
        check(*args, **kwargs)
    reason = str(caught.value)
    assert reason and reason == caught.value.reason
    for secret in (SLACK_SECRET, GITHUB_SECRET):
        assert secret not in reason
    for expected in (SLACK["expected_signature"], GITHUB["expected_hex_digest"]):
        assert expected[-64:] not in reason
    return reason


# --- Slack -----------------------------------------------------------------------------------


def test_slack_vector_is_accepted() -> None:
    assert sign_slack(SLACK_BODY, SLACK["timestamp"], SLACK_SECRET) == SLACK["expected_signature"]
    verify_slack(SLACK_BODY, SLACK["headers"], SLACK_SECRET, now=SLACK_TS)


def test_slack_header_names_are_case_insensitive() -> None:
    lower = {name.lower(): value for name, value in SLACK["headers"].items()}
    upper = {name.upper(): value for name, value in SLACK["headers"].items()}
    verify_slack(SLACK_BODY, lower, SLACK_SECRET, now=SLACK_TS)
    verify_slack(SLACK_BODY, upper, SLACK_SECRET, now=SLACK_TS)


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 299, 300])
def test_slack_accepts_clock_skew_up_to_five_minutes(skew: int) -> None:
    verify_slack(SLACK_BODY, slack_headers(), SLACK_SECRET, now=SLACK_TS + skew)


@pytest.mark.parametrize("skew", [-301, 301, 300.5, -300.5, 86400])
def test_slack_refuses_old_or_future_requests(skew: float) -> None:
    reason = refusal(verify_slack, SLACK_BODY, slack_headers(), SLACK_SECRET, now=SLACK_TS + skew)
    assert "300 s" in reason


def test_slack_uses_the_real_clock_by_default() -> None:
    refusal(verify_slack, SLACK_BODY, slack_headers(), SLACK_SECRET)  # the vector is from 2018
    timestamp = str(int(time.time()))
    fresh = slack_headers(timestamp, sign_slack(SLACK_BODY, timestamp, SLACK_SECRET))
    verify_slack(SLACK_BODY, fresh, SLACK_SECRET)


@pytest.mark.parametrize(
    ("body", "secret"),
    [
        (SLACK_BODY + b"------", SLACK_SECRET),
        (SLACK_BODY.replace(b"text=", b"text=prod"), SLACK_SECRET),
        (SLACK_BODY[:-1], SLACK_SECRET),
        (SLACK_BODY, SLACK_SECRET + "x"),
        (SLACK_BODY, SLACK_SECRET.upper()),
    ],
    ids=["body appended", "body changed", "body cut", "wrong secret", "secret case"],
)
def test_slack_refuses_changed_body_or_wrong_secret(body: bytes, secret: str) -> None:
    reason = refusal(verify_slack, body, slack_headers(), secret, now=SLACK_TS)
    assert "does not match" in reason


@pytest.mark.parametrize(
    "headers",
    [
        {},
        None,
        {"X-Slack-Signature": SLACK["expected_signature"]},
        {"X-Slack-Request-Timestamp": SLACK["timestamp"]},
        {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": SLACK["expected_signature"]},
        {"X-Slack-Request-Timestamp": SLACK["timestamp"], "X-Slack-Signature": ""},
    ],
    ids=["none", "None", "no timestamp", "no signature", "empty timestamp", "empty signature"],
)
def test_slack_refuses_missing_headers(headers: dict | None) -> None:
    assert "missing" in refusal(verify_slack, SLACK_BODY, headers, SLACK_SECRET, now=SLACK_TS)


@pytest.mark.parametrize(
    "timestamp",
    ["abc", "1531420618.0", " 1531420618", "+1531420618", "-1531420618", "1_531_420_618",
     "\u0661\u0665\u0663", "9" * 5000, "0x5b47"],
)  # fmt: skip
def test_slack_refuses_non_integer_timestamps(timestamp: str) -> None:
    signature = sign_slack(SLACK_BODY, timestamp, SLACK_SECRET)  # even when signed correctly
    headers = slack_headers(timestamp, signature)
    assert "whole number" in refusal(verify_slack, SLACK_BODY, headers, SLACK_SECRET, now=SLACK_TS)


@pytest.mark.parametrize(
    "signature",
    ["v1=" + SLACK["expected_signature"][3:], SLACK["expected_signature"].upper(),
     SLACK["expected_signature"][:-1], SLACK["expected_signature"][3:], "v0=", "v0=é"],
)  # fmt: skip
def test_slack_refuses_malformed_signatures(signature: str) -> None:
    headers = slack_headers(signature=signature)
    refusal(verify_slack, SLACK_BODY, headers, SLACK_SECRET, now=SLACK_TS)


@pytest.mark.parametrize("secret", ["", "   "])
def test_slack_without_a_secret_refuses_everything(secret: str) -> None:
    signature = sign_slack(SLACK_BODY, SLACK["timestamp"], secret)
    headers = slack_headers(signature=signature)
    assert "no signing secret" in refusal(verify_slack, SLACK_BODY, headers, secret, now=SLACK_TS)


class FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


hex_signatures = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(
    lambda digits: "v0=" + digits
)


@given(
    secret=st.text(min_size=1, max_size=40).filter(str.strip),
    body=st.text(max_size=200),
    timestamp=st.integers(min_value=0, max_value=10**10),
    zeros=st.sampled_from(["", "0", "00"]),
    skew=st.floats(min_value=-400, max_value=400, allow_nan=False),
    forge=st.sampled_from(["none", "body", "secret", "upper", "short", "random", "ascii"]),
    random_hex=hex_signatures,
    junk=st.text(alphabet=st.characters(max_codepoint=127), max_size=70),
)
@settings(max_examples=100, deadline=None)
def test_slack_verdict_matches_slack_sdk(
    secret: str,
    body: str,
    timestamp: int,
    zeros: str,
    skew: float,
    forge: str,
    random_hex: str,
    junk: str,
) -> None:
    ts = zeros + str(timestamp)
    raw = body.encode()
    signature = {
        "none": sign_slack(raw, ts, secret),
        "body": sign_slack(raw + b"x", ts, secret),
        "secret": sign_slack(raw, ts, secret + "x"),
        "upper": sign_slack(raw, ts, secret).upper(),
        "short": sign_slack(raw, ts, secret)[:-2],
        "random": random_hex,
        "ascii": junk,
    }[forge]
    headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
    now = timestamp + skew
    theirs = SignatureVerifier(secret, clock=FixedClock(now)).is_valid_request(raw, headers)
    try:
        verify_slack(raw, headers, secret, now=now)
        ours = True
    except SignatureError:
        ours = False
    assert ours == theirs


# --- GitHub ----------------------------------------------------------------------------------


def test_github_vector_is_accepted() -> None:
    assert sign_github(GITHUB_BODY, GITHUB_SECRET) == GITHUB_HEADER
    verify_github(GITHUB_BODY, GITHUB_HEADER, GITHUB_SECRET)


@pytest.mark.parametrize(
    ("body", "secret"),
    [(b"Hello, World?", GITHUB_SECRET), (GITHUB_BODY + b"\n", GITHUB_SECRET),
     (GITHUB_BODY, "It's a secret to everybody")],
    ids=["body changed", "body appended", "wrong secret"],
)  # fmt: skip
def test_github_refuses_changed_body_or_wrong_secret(body: bytes, secret: str) -> None:
    assert "does not match" in refusal(verify_github, body, GITHUB_HEADER, secret)


def test_github_refuses_a_signature_without_the_sha256_prefix() -> None:
    bare = GITHUB["expected_hex_digest"]
    assert "sha256=" in refusal(verify_github, GITHUB_BODY, bare, GITHUB_SECRET)
    legacy = "sha1=" + "0" * 40
    assert "sha256=" in refusal(verify_github, GITHUB_BODY, legacy, GITHUB_SECRET)


@pytest.mark.parametrize("header", [None, ""])
def test_github_refuses_a_missing_header(header: str | None) -> None:
    assert "missing" in refusal(verify_github, GITHUB_BODY, header, GITHUB_SECRET)


@pytest.mark.parametrize(
    "header",
    [GITHUB_HEADER.upper(), GITHUB_HEADER[:-1], GITHUB_HEADER + "0", "sha256=", "sha256=é"],
)
def test_github_refuses_malformed_signatures(header: str) -> None:
    refusal(verify_github, GITHUB_BODY, header, GITHUB_SECRET)


@pytest.mark.parametrize("secret", ["", " "])
def test_github_without_a_secret_refuses_everything(secret: str) -> None:
    header = sign_github(GITHUB_BODY, secret)
    assert "no signing secret" in refusal(verify_github, GITHUB_BODY, header, secret)


@pytest.mark.parametrize(
    "payload", sorted((FIXTURES / "github_webhooks").glob("*.payload.json")), ids=lambda p: p.name
)
def test_github_real_payloads_verify_over_their_exact_bytes(payload: Path) -> None:
    raw = payload.read_bytes()
    header = sign_github(raw, "webhook-test-secret")
    verify_github(raw, header, "webhook-test-secret")
    reformatted = json.dumps(json.loads(raw)).encode()  # same JSON, other bytes
    assert reformatted != raw
    refusal(verify_github, reformatted, header, "webhook-test-secret")


@given(body=st.binary(max_size=300), secret=st.text(min_size=1).filter(str.strip), data=st.data())
@settings(max_examples=100, deadline=None)
def test_github_any_changed_byte_is_refused(body: bytes, secret: str, data: st.DataObject) -> None:
    header = sign_github(body, secret)
    verify_github(body, header, secret)
    if body:
        at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        flipped = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
        refusal(verify_github, flipped, header, secret)
