"""Notification targets on their own: the signed webhook, e-mail through Apprise, a target that
fails. End to end from real deploys: test_notifications_e2e.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import replace

import pytest

from adapters.notifications import Ready, notify
from blocks.environment import Notification
from tests.notification_sinks import smtp_server, webhook

SECRET = "webhook-signing-key-for-tests"


def hook(url: str, **settings: object) -> Ready:
    """A webhook target with its key (as :func:`adapters.notifications.ready` loads it)."""
    return Ready(1, Notification(webhook=url, webhook_secret="a-secret", **settings), SECRET)


def apprise_target(url: str, number: int = 1) -> Ready:
    return Ready(number, Notification(apprise_secret="a-secret"), url)


FACTS = {
    "action": "deploy",
    "app": "shop",
    "environment": "staging",
    "ref": "v1",
    "sha": "1a2b3c4d5e6f7a8b9c0d",
    "hosts": ["web-1", "web-2"],
    "requested_by": "alice",
    "run_url": "http://127.0.0.1:4200/runs/flow-run/abc",
    "error": None,
}


def test_a_webhook_gets_the_event_as_json_signed_with_its_secret() -> None:
    with webhook() as sink:
        assert notify([hook(sink.url)], "succeeded", FACTS, logging.getLogger("test")) == 1
    [delivery] = sink.deliveries
    expected = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Chatops-Signature"] == f"sha256={expected}"
    assert delivery.headers["X-Chatops-Event"] == "succeeded"
    assert delivery.headers["Content-Type"] == "application/json"
    assert json.loads(delivery.body) == {**FACTS, "event": "succeeded"}
    assert SECRET.encode() not in delivery.body


def test_a_target_gets_only_the_events_it_lists() -> None:
    with webhook() as sink:
        target = hook(sink.url, events=["failed"])
        for event in ("started", "succeeded", "failed", "rolled_back"):
            notify([target], event, FACTS, logging.getLogger("test"))
    assert [d.headers["X-Chatops-Event"] for d in sink.deliveries] == ["failed"]


def test_e_mail_goes_through_apprise_with_the_event_in_the_subject() -> None:
    with smtp_server() as mailbox:
        target = apprise_target(mailbox.url("qa@example.net"))
        failed = {**FACTS, "error": "health check web-2: HTTP 503"}
        assert notify([target], "failed", failed, logging.getLogger("test")) == 1
    [message] = mailbox.messages
    assert message["Subject"] == "Deploy shop@v1 (1a2b3c4) → staging: failed"
    assert mailbox.recipients == [["qa@example.net"]]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Requested by: alice" in text and "Hosts: web-1, web-2" in text
    assert "health check web-2: HTTP 503" in text


def test_failing_targets_are_logged_without_secrets_and_the_others_still_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_path = "T000/B000/secret-path-token"
    with webhook(status=500) as refusing, webhook() as working:
        mail = "mailto://user:mail-password@127.0.0.1:9?from=chatops@example.net&to=qa@example.net"
        targets = [
            hook(f"{refusing.url}/{secret_path}"),
            replace(hook(f"http://127.0.0.1:9/{secret_path}"), number=2),
            apprise_target(mail, number=3),
            replace(hook(working.url), number=4),
        ]
        with caplog.at_level(logging.INFO):
            sent = notify(targets, "started", FACTS, logging.getLogger("chatops.test"))
    assert sent == 1 and len(working.deliveries) == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "chatops.test"]
    assert warnings == [
        "Notification 1 (webhook to 127.0.0.1) of staging did not take 'started': HTTP 500; "
        "the deploy goes on",
        "Notification 2 (webhook to 127.0.0.1) of staging did not take 'started': "
        "ConnectionRefusedError; the deploy goes on",
        "Notification 3 (mailto:// notification) of staging did not take 'started': Apprise "
        "could not send it; the deploy goes on",
    ]
    logged = caplog.text
    for secret in (SECRET, secret_path, "mail-password"):
        assert secret not in logged


def test_targets_read_their_secret_blocks_and_one_without_is_left_out(
    prefect_server: None, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.blocks.system import Secret

    from adapters.notifications import ready

    Secret(value=SECRET).save("test-notification-key", overwrite=True)
    targets = [
        Notification(webhook="https://hooks.example.net/x", webhook_secret="test-notification-key"),
        Notification(apprise_secret="no-such-secret-block"),
    ]
    [loaded] = ready(targets, logging.getLogger("chatops.test"))
    assert (loaded.number, loaded.secret) == (1, SECRET)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "chatops.test"]
    assert warning.startswith(
        "Notification 2 is off: its Secret block 'no-such-secret-block' cannot be read ("
    )
