"""Deploy progress in Slack: one message per deploy, kept current as the steps finish.

A flow posts a deploy card once and then updates that same message after every step::

    client = slack_client(SlackAccess.load("chatops-slack"))
    ts = post_deploy_message(client, "C0DEPLOYS01", progress)     # None if Slack failed
    progress["steps"][0]["state"] = "done"
    update_deploy_message(client, "C0DEPLOYS01", ts, progress)    # a no-op when ts is None
    post_thread_reply(client, "C0DEPLOYS01", ts, "Build log tail: ...")

``progress`` is a plain dict (see ``render_deploy_message``). Use a channel **ID** (``C...``), as
slash commands deliver it: chat.postMessage accepts ``#names`` but chat.update answers
``channel_not_found`` for them.

Slack is a side channel: nothing here raises because of Slack. API errors (``channel_not_found``,
``ratelimited``, ...), connection failures and timeouts are logged as a warning and the function
returns ``None``. The bot token never appears in those logs. All user-supplied text (refs, names,
error output) is escaped for Slack's mrkdwn, so ``<!channel>`` shows up as text and pings nobody.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from http.client import HTTPException
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from blocks.slack import SlackAccess

TIMEOUT_SECONDS = 5
MAX_RETRIES = 2
MAX_RETRY_AFTER_SECONDS = 10.0
"""A 429 asking to wait longer than this is not retried: the deploy does not wait for Slack."""

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
TEXT_LIMIT = 4000
"""Slack truncates long message text; 4000 characters is its recommended maximum."""
ERROR_EXCERPT_LINES = 12
ERROR_EXCERPT_CHARS = 800
HOSTS_SHOWN = 8

STEP_EMOJI = {
    "pending": ":white_circle:",
    "running": ":hourglass_flowing_sand:",
    "done": ":white_check_mark:",
    "failed": ":x:",
    "skipped": ":fast_forward:",
    "cached": ":recycle:",
}
OUTCOMES = {
    None: (":rocket:", "Deploying", "in progress"),
    "success": (":white_check_mark:", "Deployed", "success"),
    "failure": (":x:", "Deploy failed:", "failure"),
    "error": (":warning:", "Deploy errored:", "error"),
}
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{8,}$")
SAFE_URL = re.compile(r"^https?://[^\s<>|]+$")
SECRET_PATTERNS = (
    re.compile(r"xox[a-z]-[A-Za-z0-9-]+"),  # Slack tokens
    re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"),  # GitHub tokens
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in URLs
)


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


# --------------------------------------------------------------------------- text helpers
def escape_mrkdwn(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so Slack shows user text as typed (no links, no pings)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def redact_secrets(text: str) -> str:
    """Replace things that look like tokens or URL passwords with ``[redacted]``."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def clip(text: str, limit: int) -> str:
    """Shorten ``text`` to ``limit`` characters with a trailing ``…``, never splitting ``&amp;``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # the cut fell inside an entity such as &amp; or &lt;
    return cut + "…"


def _code(text: str) -> str:
    """Inline code for user text: escaped, and with no backtick to break out of the span."""
    return "`" + escape_mrkdwn(text.replace("`", "ˋ")) + "`"


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _plain(text: str, limit: int) -> dict[str, str]:
    return {"type": "plain_text", "text": clip(text, limit) or " "}


def _mrkdwn(text: str, limit: int = SECTION_LIMIT) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


# --------------------------------------------------------------------------- the card
def _title(progress: dict[str, Any]) -> str:
    sha = progress.get("sha")
    commit = f" ({str(sha)[:7]})" if sha else ""
    return (
        f"{progress.get('app', '?')}@{progress.get('ref', '?')}{commit}"
        f" → {progress.get('environment', '?')}"
    )


def _steps(progress: dict[str, Any]) -> list[dict[str, Any]]:
    steps = progress.get("steps") or []
    return [s for s in steps if isinstance(s, dict)]


def _who(requested_by: Any) -> str:
    name = str(requested_by or "someone")
    return f"<@{name}>" if SLACK_USER_ID.match(name) else escape_mrkdwn(name)


def _environment(progress: dict[str, Any]) -> str:
    name = escape_mrkdwn(str(progress.get("environment", "?")))
    url = progress.get("environment_url")
    if isinstance(url, str) and SAFE_URL.match(url) and len(url) <= 2000:
        return f"<{escape_mrkdwn(url)}|{name}>"
    return name


def _hosts(hosts: Any) -> str:
    names = [str(h) for h in (hosts or [])]
    shown = ", ".join(names[:HOSTS_SHOWN])
    more = f" (+{len(names) - HOSTS_SHOWN} more)" if len(names) > HOSTS_SHOWN else ""
    return escape_mrkdwn(shown + more) if names else "–"


def _state(progress: dict[str, Any]) -> str:
    steps = _steps(progress)
    finished = sum(s.get("state") in ("done", "skipped", "cached") for s in steps)
    elapsed = _duration(sum(float(s.get("seconds") or 0) for s in steps) or None)
    label = OUTCOMES.get(progress.get("outcome"), OUTCOMES["error"])[2]
    running = next((s for s in steps if s.get("state") == "running"), None)
    detail = f" – {escape_mrkdwn(str(running.get('name', '')))}" if running else ""
    timing = f" · {elapsed}" if elapsed else ""
    return f"{label}{detail}\n{finished}/{len(steps)} steps{timing}"


def _summary_block(progress: dict[str, Any]) -> dict[str, Any]:
    emoji, verb, _ = OUTCOMES.get(progress.get("outcome"), OUTCOMES["error"])
    headline = (
        f"{emoji} *{verb}* {_code(str(progress.get('ref', '?')))} to "
        f"*{escape_mrkdwn(str(progress.get('environment', '?')))}*"
    )
    fields = [
        f"*Requested by*\n{_who(progress.get('requested_by'))}",
        f"*Environment*\n{_environment(progress)}",
        f"*Hosts*\n{_hosts(progress.get('hosts'))}",
        f"*State*\n{_state(progress)}",
    ]
    if progress.get("sha"):
        fields.append(f"*Commit*\n{_code(str(progress['sha'])[:12])}")
    if progress.get("deployment_id") is not None:
        fields.append(f"*GitHub deployment*\n#{escape_mrkdwn(str(progress['deployment_id']))}")
    return {
        "type": "section",
        "block_id": "deploy_summary",
        "text": _mrkdwn(headline),
        "fields": [_mrkdwn(f, FIELD_LIMIT) for f in fields],
    }


def _step_line(step: dict[str, Any]) -> str:
    state = str(step.get("state", "pending"))
    emoji = STEP_EMOJI.get(state, ":grey_question:")
    timing = _duration(step.get("seconds"))
    name = escape_mrkdwn(str(step.get("name", "?")))
    suffix = f"  `{timing}`" if timing else ""
    marker = f"  _{state}_" if state in ("skipped", "cached", "failed") else ""
    return f"{emoji} {name}{marker}{suffix}"


def _steps_block(progress: dict[str, Any]) -> dict[str, Any] | None:
    lines = [_step_line(s) for s in _steps(progress)]
    if not lines:
        return None
    return {"type": "section", "block_id": "deploy_steps", "text": _mrkdwn("\n".join(lines))}


def error_excerpt(error: str) -> str:
    """The first lines of ``error``, secrets redacted, mrkdwn-escaped and safe in a code block."""
    lines = redact_secrets(error.replace("\r\n", "\n")).strip().split("\n")
    head = "\n".join(lines[:ERROR_EXCERPT_LINES])
    more = "\n…" if len(lines) > ERROR_EXCERPT_LINES else ""
    escaped = escape_mrkdwn(head.replace("```", "ˋˋˋ"))
    return clip(escaped, ERROR_EXCERPT_CHARS) + more


def _error_block(progress: dict[str, Any]) -> dict[str, Any] | None:
    error = progress.get("error")
    if progress.get("outcome") not in ("failure", "error") or not error:
        return None
    text = f"*What went wrong*\n```{error_excerpt(str(error))}```"
    return {"type": "section", "block_id": "deploy_error", "text": _mrkdwn(text)}


def _rollback_button(progress: dict[str, Any]) -> dict[str, Any] | None:
    app, environment = str(progress.get("app", "")), str(progress.get("environment", ""))
    value = json.dumps({"app": app, "environment": environment}, separators=(",", ":"))
    if not app or not environment or len(value) > 2000:
        return None
    question = (
        f"Switch *{escape_mrkdwn(environment)}* back to the release of "
        f"*{escape_mrkdwn(app)}* that ran before this deploy? Nothing is rebuilt."
    )
    return {
        "type": "button",
        "action_id": "rollback",
        "text": _plain("Roll back", 75),
        "style": "danger",
        "value": value,
        "confirm": {
            "title": _plain(f"Roll back {environment}?", 100),
            "text": _mrkdwn(question, 300),
            "confirm": _plain("Roll back", 30),
            "deny": _plain("Cancel", 30),
        },
    }


def _deploy_anyway_button(progress: dict[str, Any]) -> dict[str, Any] | None:
    """Offered when GitHub refused the deploy because required checks are not green."""
    parameters = progress.get("force_parameters")
    value = json.dumps(parameters, separators=(",", ":")) if isinstance(parameters, dict) else ""
    if not value or len(value) > 2000:
        return None
    question = (
        f"Deploy *{escape_mrkdwn(_title(progress))}* although its required checks are not green?"
    )
    return {
        "type": "button",
        "action_id": "deploy_anyway",
        "text": _plain("Deploy anyway", 75),
        "style": "danger",
        "value": value,
        "confirm": {
            "title": _plain("Skip the checks?", 100),
            "text": _mrkdwn(question, 300),
            "confirm": _plain("Deploy anyway", 30),
            "deny": _plain("Cancel", 30),
        },
    }


def _actions_block(progress: dict[str, Any]) -> dict[str, Any] | None:
    elements: list[dict[str, Any]] = []
    run_url = progress.get("run_url")
    if isinstance(run_url, str) and SAFE_URL.match(run_url) and len(run_url) <= 3000:
        elements.append(
            {
                "type": "button",
                "action_id": "view_run",
                "text": _plain("View run", 75),
                "url": run_url,
            }
        )
    if progress.get("outcome") == "success":
        rollback = _rollback_button(progress)
        elements += [rollback] if rollback else []
    if progress.get("outcome") == "failure":
        anyway = _deploy_anyway_button(progress)
        elements += [anyway] if anyway else []
    if not elements:
        return None
    return {"type": "actions", "block_id": "deploy_actions", "elements": elements}


def _fallback_text(progress: dict[str, Any]) -> str:
    label = OUTCOMES.get(progress.get("outcome"), OUTCOMES["error"])[2]
    who = _who(progress.get("requested_by"))
    text = f"Deploy {escape_mrkdwn(_title(progress))}: {label} (requested by {who})"
    return clip(text, TEXT_LIMIT)


def render_deploy_message(progress: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The deploy card for ``progress``: ``(fallback text, Block Kit blocks)``.

    ``progress`` keys (all optional; missing ones render as ``?``)::

        {"app": "shop", "environment": "staging", "ref": "feature-x", "sha": "1a2b3c4d…" | None,
         "requested_by": "U0ALICE001" | "alice", "run_url": "http://…/runs/flow-run/<id>",
         "environment_url": str | None, "hosts": ["web-1", …],
         "steps": [{"name": "build", "state": "pending|running|done|failed|skipped|cached",
                    "seconds": 12.5 | None}, …],
         "outcome": None | "success" | "failure" | "error", "error": str | None,
         "deployment_id": int | None, "force_parameters": dict | None}

    The card: a header ``shop@feature-x (1a2b3c4) → staging``, a summary with fields (who,
    environment, hosts, state, commit, GitHub deployment), the step checklist with timings, an
    error excerpt when the deploy failed, and buttons: "View run" (link) and, after a success,
    "Roll back" (``action_id="rollback"``, ``value='{"app":…,"environment":…}'``, danger, with a
    confirm dialog), or, when GitHub refused the deploy over red checks and ``force_parameters``
    holds the deploy's parameters, "Deploy anyway" (``action_id="deploy_anyway"``, value = those
    parameters as JSON, with a confirm dialog). A Slack user ID in ``requested_by`` becomes a
    mention; any other text is escaped. Block Kit limits are respected by clipping.
    """
    header = {
        "type": "header",
        "block_id": "deploy_header",
        "text": _plain(_title(progress), HEADER_LIMIT),
    }
    optional = (_steps_block(progress), _error_block(progress), _actions_block(progress))
    blocks = [header, _summary_block(progress), *(b for b in optional if b is not None)]
    return _fallback_text(progress), blocks


# --------------------------------------------------------------------------- Slack calls
def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a flow or task run (shown in the Prefect UI), else a module logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger(__name__)


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
        _logger().warning("Slack %s failed; the deploy goes on: %s", action, redact_secrets(detail))
        return None


def post_deploy_message(
    client: WebClient, channel: str, progress: dict[str, Any], thread_ts: str | None = None
) -> str | None:
    """Post the deploy card to ``channel`` (in the ``thread_ts`` thread if given).

    Returns the message ``ts`` to pass to ``update_deploy_message``, or None if Slack failed.
    """
    text, blocks = render_deploy_message(progress)
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
    client: WebClient, channel: str, ts: str | None, progress: dict[str, Any]
) -> None:
    """Replace the card ``ts`` in ``channel`` (a channel ID) with the current ``progress``.

    Does nothing when ``ts`` is None (the post failed), so callers need no special case.
    """
    if not ts:
        return
    text, blocks = render_deploy_message(progress)
    _safely(
        client,
        "chat.update",
        lambda: client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
    )


def post_thread_reply(
    client: WebClient, channel: str, thread_ts: str | None, text: str, *, escape: bool = True
) -> str | None:
    """Reply under the card ``thread_ts``; returns the reply's ``ts`` or None.

    ``text`` is escaped (and secret-looking strings redacted) unless ``escape=False``; pass
    ``escape=False`` only for text you composed yourself, escaping user parts with
    ``escape_mrkdwn``. Long text is clipped to 4000 characters. Does nothing without a thread.
    """
    if not thread_ts:
        return None
    body = clip(escape_mrkdwn(redact_secrets(text)) if escape else text, TEXT_LIMIT)
    response = _safely(
        client,
        "chat.postMessage (thread reply)",
        lambda: client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=body, unfurl_links=False
        ),
    )
    return response["ts"] if response is not None else None
