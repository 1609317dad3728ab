"""Deploy progress in Slack: one message per deploy, kept current as the steps finish.

A flow posts a deploy card once and then updates that same message after every step::

    client = slack_client(SlackAccess.load("default"))
    ts = post_deploy_message(client, "C0DEPLOYS01", summary)     # None if Slack failed
    summary.step("build").state = "done"
    update_deploy_message(client, "C0DEPLOYS01", ts, summary)    # a no-op when ts is None
    post_message(client, "C0DEPLOYS01", "Build log tail: ...", thread_ts=ts)

The card itself is rendered by :mod:`render.slack_card`. Use a channel **ID** (``C...``), as slash
commands deliver it: chat.postMessage accepts ``#names`` but chat.update answers
``channel_not_found`` for them.

Slack is a side channel: nothing here raises because of Slack. API errors (``channel_not_found``,
``ratelimited``, ...), connection failures and timeouts are logged as a warning and the function
returns ``None``. The bot token never appears in those logs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from http.client import HTTPException

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from adapters.logs import run_logger
from blocks.slack import SlackAccess
from model.summary import DeploySummary
from render.slack_card import TEXT_LIMIT, clip, escape_mrkdwn, redact_secrets, render_deploy_message

TIMEOUT_SECONDS = 5
MAX_RETRIES = 2
MAX_RETRY_AFTER_SECONDS = 10.0
"""A 429 asking to wait longer than this is not retried: the deploy does not wait for Slack."""


# --------------------------------------------------------------------------- client
def _retry_after(response: HttpResponse) -> float:
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0]))
            except ValueError:
                break
    return 1.0


class BoundedRateLimitRetryHandler(RetryHandler):
    """Retries HTTP 429 after Slack's ``Retry-After`` (plus ≤0.25 s jitter), if that is short.

    slack_sdk's own ``RateLimitErrorRetryHandler`` always waits, however long Slack asks; a deploy
    would rather skip one progress update than stall on it.
    """

    def __init__(self, max_retry_count: int = MAX_RETRIES, max_wait: float = 10.0) -> None:
        super().__init__(max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return (
            response is not None
            and response.status_code == 429
            and _retry_after(response) <= self.max_wait
        )

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = _retry_after(response) if response is not None else 1.0
        time.sleep(wait + random.random() / 4)
        state.increment_current_attempt()


def slack_client(access: SlackAccess, *, timeout: int = TIMEOUT_SECONDS) -> WebClient:
    """A WebClient for ``access`` that retries what is worth retrying, briefly.

    Retried (at most twice per call): connection failures with no HTTP answer, HTTP 500/503, and
    HTTP 429 when ``Retry-After`` ≤ 10 s. Each attempt times out after ``timeout`` seconds.
    Retrying a chat.postMessage after a 500 can, rarely, post the card twice; Slack offers no
    idempotency key, and a duplicate card beats a silent deploy.
    """
    backoff = BackoffRetryIntervalCalculator(backoff_factor=0.25)
    return WebClient(
        token=access.bot_token.get_secret_value(),
        base_url=access.api_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=MAX_RETRIES, interval_calculator=backoff),
            BoundedRateLimitRetryHandler(MAX_RETRIES, MAX_RETRY_AFTER_SECONDS),
            ServerErrorRetryHandler(max_retry_count=MAX_RETRIES, interval_calculator=backoff),
        ],
    )


# --------------------------------------------------------------------------- Slack calls
def _describe(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return f"{exc.response.get('error')} (HTTP {exc.response.status_code})"
    return f"{type(exc).__name__}: {exc}"


def _safely(
    client: WebClient, action: str, call: Callable[[], SlackResponse]
) -> SlackResponse | None:
    """Run one Slack call; on any Slack or network failure log a warning and return None."""
    try:
        return call()
    except (SlackClientError, OSError, HTTPException) as exc:
        detail = clip(_describe(exc), 300)
        if client.token:
            detail = detail.replace(client.token, "[redacted]")
        run_logger(__name__).warning(
            "Slack %s failed; the deploy goes on: %s", action, redact_secrets(detail)
        )
        return None


def post_deploy_message(
    client: WebClient, channel: str, summary: DeploySummary, thread_ts: str | None = None
) -> str | None:
    """Post the deploy card to ``channel`` (in the ``thread_ts`` thread if given).

    Returns the message ``ts`` to pass to ``update_deploy_message``, or None if Slack failed.
    """
    text, blocks = render_deploy_message(summary)
    response = _safely(
        client,
        "chat.postMessage",
        lambda: client.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
        ),
    )
    return response["ts"] if response is not None else None


def update_deploy_message(
    client: WebClient, channel: str, ts: str | None, summary: DeploySummary
) -> None:
    """Replace the card ``ts`` in ``channel`` (a channel ID) with the current ``summary``.

    Does nothing when ``ts`` is None (the post failed), so callers need no special case.
    """
    if not ts:
        return
    text, blocks = render_deploy_message(summary)
    _safely(
        client,
        "chat.update",
        lambda: client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
    )


def post_message(
    client: WebClient, channel: str, text: str, *, thread_ts: str | None = None
) -> str | None:
    """Post ``text`` to ``channel`` (under the message ``thread_ts`` if given); its ``ts`` or
    None. The text is escaped, secret-looking strings are redacted, and it is clipped to 4000
    characters."""
    body = clip(escape_mrkdwn(redact_secrets(text)), TEXT_LIMIT)
    response = _safely(
        client,
        "chat.postMessage",
        lambda: client.chat_postMessage(
            channel=channel, text=body, thread_ts=thread_ts, unfurl_links=False
        ),
    )
    return response["ts"] if response is not None else None
