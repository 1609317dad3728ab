"""Check that a request really comes from Slack or GitHub before reading it.

Both checks run over the **raw request body**, before any form or JSON parsing, and either return
``None`` (authentic) or raise :class:`SignatureError` with a short reason that is safe to log: it
never contains the secret or the signature we expected.

Slack (``v0`` scheme, headers ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature``)::

    try:
        verify_slack(raw_body, request.headers, settings.slack_signing_secret)
    except SignatureError as exc:
        return 401, str(exc)

GitHub (``X-Hub-Signature-256: sha256=<hex>``)::

    verify_github(raw_body, request.headers.get("X-Hub-Signature-256"), webhook_secret)

An empty secret refuses every request: a gateway without its secret must not accept anything.
:func:`sign_slack` and :func:`sign_github` build the headers a sender would send (tests, fakes).
"""

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from model.errors import ChatopsError

SLACK_MAX_SKEW_SECONDS = 300
"""Slack requests older or newer than this (seconds, either direction) are refused."""

SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SLACK_SIGNATURE_HEADER = "X-Slack-Signature"
GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"

_SLACK_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_GITHUB_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
# Digits only: int() would also take signs, spaces, "_" and non-ASCII digits, and raise on very
# long strings.
_TIMESTAMP = re.compile(r"[0-9]{1,20}")


class SignatureError(ChatopsError):
    """The request is not authentic (answer 401). ``reason`` says why, without any secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign_slack(body: bytes | str, timestamp: str, secret: str) -> str:
    """The ``X-Slack-Signature`` value Slack sends for ``body`` at ``timestamp``."""
    body = body.encode() if isinstance(body, str) else body
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign_github(body: bytes | str, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    body = body.encode() if isinstance(body, str) else body
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_slack(
    body: bytes, headers: Mapping[str, str], secret: str, now: float | None = None
) -> None:
    """Raise :class:`SignatureError` unless ``body`` was signed by Slack with ``secret``.

    ``headers`` may use any capitalisation. ``now`` (Unix seconds) defaults to the clock; pass it
    in tests. A timestamp more than 300 s away from ``now``, in either direction, is refused so a
    captured request cannot be replayed later.
    """
    _require_secret(secret)
    timestamp = _header(headers, SLACK_TIMESTAMP_HEADER)
    signature = _header(headers, SLACK_SIGNATURE_HEADER)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError(f"{SLACK_TIMESTAMP_HEADER} is not a whole number of seconds")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > SLACK_MAX_SKEW_SECONDS:
        raise SignatureError(
            f"{SLACK_TIMESTAMP_HEADER} is more than {SLACK_MAX_SKEW_SECONDS} s from our clock"
        )
    if not _SLACK_SIGNATURE.fullmatch(signature):
        raise SignatureError(f"{SLACK_SIGNATURE_HEADER} is not of the form v0=<64 hex digits>")
    if not hmac.compare_digest(sign_slack(body, timestamp, secret), signature):
        raise SignatureError(f"{SLACK_SIGNATURE_HEADER} does not match the request body")


def verify_github(body: bytes, signature_header: str | None, secret: str) -> None:
    """Raise :class:`SignatureError` unless ``body`` was signed by GitHub with ``secret``.

    ``signature_header`` is the ``X-Hub-Signature-256`` value (``None`` when absent). The legacy
    SHA-1 ``X-Hub-Signature`` is not accepted.
    """
    _require_secret(secret)
    if not signature_header or not isinstance(signature_header, str):
        raise SignatureError(f"missing {GITHUB_SIGNATURE_HEADER} header")
    if not signature_header.startswith("sha256="):
        raise SignatureError(f"{GITHUB_SIGNATURE_HEADER} must start with 'sha256='")
    if not _GITHUB_SIGNATURE.fullmatch(signature_header):
        raise SignatureError(f"{GITHUB_SIGNATURE_HEADER} is not of the form sha256=<64 hex digits>")
    if not hmac.compare_digest(sign_github(body, secret), signature_header):
        raise SignatureError(f"{GITHUB_SIGNATURE_HEADER} does not match the request body")


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    """The value of header ``name`` (any capitalisation); missing or empty is refused."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if isinstance(key, str) and key.lower() == wanted:
            if isinstance(value, str) and value:
                return value
            break
    raise SignatureError(f"missing {name} header")


def _require_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret.strip():
        raise SignatureError("no signing secret is configured; refusing every request")
