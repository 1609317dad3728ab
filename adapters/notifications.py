"""Tell an environment's notification targets that a deploy or rollback started, succeeded,
failed or rolled back (``Environment.notifications``).

Two kinds of target::

    webhook         POST the event as JSON; header X-Chatops-Signature: sha256=<HMAC-SHA256 of
                    the body with the key, hex>, so the receiver knows it came from chatops
    apprise_secret  the event as a title and a text through Apprise (mailto:// e-mail, and every
                    other service Apprise knows)

Each target's secret (the webhook's key, or the Apprise URL) is a Prefect ``Secret`` block,
read once per run by :func:`ready`; then :func:`notify` sends each event::

    targets = ready(environment.notifications, logger)
    notify(targets, "started", facts, logger)

The webhook is posted by :func:`send_webhook` rather than Apprise's JSON plugin because the
signature must cover the exact bytes sent, which that plugin serializes itself. A target that
fails (refuses, times out, is down) is logged with its kind and host, never its URL path or
secret, and the deploy goes on: :func:`notify` never raises.
"""

import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apprise
from prefect.blocks.system import Secret

from blocks.environment import Event, Notification
from model.errors import DeployError

SIGNATURE_HEADER = "X-Chatops-Signature"
EVENT_HEADER = "X-Chatops-Event"
TIMEOUT_SECONDS = 10.0
"""How long one target may take to answer; a deploy waits at most this long per target."""
TITLES = {
    "started": "started",
    "succeeded": "succeeded",
    "failed": "failed",
    "rolled_back": "rolled back",
}


class NotificationFailed(DeployError):
    """A target did not take the event; the message names no secret."""


def signature(body: bytes, secret: str) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``.

    >>> signature(b'{"event":"started"}', "key")[:16]
    'sha256=093a5ae78'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(facts: Mapping[str, Any]) -> bytes:
    """The webhook body: ``facts`` as compact JSON (the bytes that are signed and sent)."""
    return json.dumps(facts, separators=(",", ":"), sort_keys=True).encode()


def title_of(facts: Mapping[str, Any]) -> str:
    """One line for an e-mail subject: ``Deploy shop@v1 (1a2b3c4) → staging: succeeded``."""
    sha = f" ({str(facts.get('sha'))[:7]})" if facts.get("sha") else ""
    what = "Rollback" if facts.get("action") == "rollback" else "Deploy"
    return (
        f"{what} {facts.get('app')}@{facts.get('ref')}{sha} → {facts.get('environment')}: "
        f"{TITLES.get(str(facts.get('event')), facts.get('event'))}"
    )


def text_of(facts: Mapping[str, Any]) -> str:
    """The event for people: who, where, the run's link, and the error of a failure."""
    lines = [title_of(facts), ""]
    labels = (
        ("requested_by", "Requested by"),
        ("hosts", "Hosts"),
        ("run_url", "Run"),
        ("environment_url", "Environment"),
        ("at", "At"),
    )
    for name, label in labels:
        value = facts.get(name)
        if value:
            lines.append(f"{label}: {', '.join(value) if isinstance(value, list) else value}")
    if facts.get("error"):
        lines += ["", str(facts["error"])]
    return "\n".join(lines)


@dataclass(frozen=True)
class Ready:
    """A notification target with its secret read: what :func:`send` needs."""

    number: int
    target: Notification
    secret: str

    def describe(self) -> str:
        """The target for a log line: its kind and host (a path or a password may be secret)."""
        if self.target.webhook is not None:
            return f"webhook to {urllib.parse.urlsplit(self.target.webhook).hostname}"
        scheme = self.secret.split("://", 1)[0] if "://" in self.secret else "?"
        return f"{scheme}:// notification"


def ready(targets: list[Notification], logger: Any) -> list[Ready]:
    """The targets with their secrets loaded from their Secret blocks; a target whose block is
    missing or unreadable is logged (by its block's name) and left out."""
    found = []
    for number, target in enumerate(targets, start=1):
        try:
            value = Secret.load(target.secret_block).get()
        except Exception as exc:  # a missing secret never fails the deploy
            logger.warning(
                "Notification %d is off: its Secret block %r cannot be read (%s)",
                number,
                target.secret_block,
                type(exc).__name__,
            )
            continue
        found.append(Ready(number, target, str(value)))
    return found


def send_webhook(url: str, secret: str, event: Event, body: bytes) -> None:
    """POST ``body`` signed with ``secret``; :class:`NotificationFailed` unless it answers 2xx.

    With the standard library's client, which logs nothing: httpx logs every request's URL,
    and a webhook's path is often its secret."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(body, secret),
        EVENT_HEADER: event,
        "User-Agent": "chatops-deploy",
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise NotificationFailed(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        why = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
        raise NotificationFailed(why) from None
    except OSError as exc:  # timeouts, resets
        raise NotificationFailed(type(exc).__name__) from None


def send_apprise(url: str, title: str, text: str) -> None:
    """Send through Apprise; :class:`NotificationFailed` if it could not (Apprise logs why,
    passwords masked)."""
    sender = apprise.Apprise()
    if not sender.add(url):
        raise NotificationFailed("Apprise does not understand the URL")
    if not sender.notify(title=title, body=text, body_format=apprise.NotifyFormat.TEXT):
        raise NotificationFailed("Apprise could not send it")


def send(target: Ready, event: Event, facts: Mapping[str, Any]) -> None:
    """Send one event to one target; :class:`NotificationFailed` if it did not take it."""
    if target.target.webhook is not None:
        send_webhook(target.target.webhook, target.secret, event, body_of(facts))
    else:
        send_apprise(target.secret, title_of(facts), text_of(facts))


def notify(targets: list[Ready], event: Event, facts: Mapping[str, Any], logger: Any) -> int:
    """Send ``event`` (with ``facts``, which gain ``"event"``) to every target that wants it;
    log each failure on ``logger`` and go on. Returns how many targets took it."""
    facts = {**facts, "event": event}
    sent = 0
    for target in targets:
        if event not in target.target.events:
            continue
        try:
            send(target, event, facts)
        except Exception as exc:  # a notification target never fails the deploy
            why = str(exc) if isinstance(exc, NotificationFailed) else type(exc).__name__
            logger.warning(
                "Notification %d (%s) of %s did not take %r: %s; the deploy goes on",
                target.number,
                target.describe(),
                facts.get("environment"),
                event,
                why,
            )
        else:
            sent += 1
    return sent
