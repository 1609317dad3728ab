"""The deploy card: a :class:`~model.summary.DeploySummary` rendered as Slack Block Kit.

Pure functions, no Slack calls (those are in :mod:`adapters.slack`)::

    >>> from model.summary import DeploySummary, Step
    >>> card = DeploySummary("shop", "staging", "feature-x", hosts=["web-1"],
    ...                      steps=[Step("build", "done", 4.2), Step("upload")])
    >>> text, blocks = render_deploy_message(card)
    >>> text
    'Deploy shop@feature-x → staging: in progress (requested by someone)'
    >>> [b["type"] for b in blocks]
    ['header', 'section', 'section', 'actions']

The card: a header ``shop@feature-x (1a2b3c4) → staging``, a summary with fields (who,
environment, hosts, state, commit, what it changes against what runs there now with a compare
link, GitHub deployment), the step checklist with timings, an error
excerpt when the deploy failed, and buttons: "View run" (link) and, after a success, "Roll back"
(``action_id="rollback"``, ``value='{"app":…,"environment":…}'``, danger, with a confirm
dialog), while it runs "Abort" (``action_id="abort"``, the same value, danger, with a confirm
dialog), or, when GitHub refused the deploy over red checks and ``force_parameters`` holds the
deploy's parameters, "Deploy anyway" (``action_id="deploy_anyway"``, value = those parameters as
JSON, with a confirm dialog). While the deploy waits for its environment's slot
(``waiting_for``), a context line under the header says for which run, whose, since when, and
how to abort it; it goes once the deploy holds the slot. A Slack user ID in ``requested_by``
becomes a mention; any other text is escaped, so ``<!channel>`` shows up as text and pings
nobody. Block Kit limits are respected by clipping.
"""

import json
import re
from datetime import datetime
from typing import Any

from model.summary import Change, DeploySummary, SlotHolder, Step

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
MRKDWN_LINK = re.compile(r"<(https?://[^|>\s]+)\|([^>]*)>")
"""A link in Slack mrkdwn, ``<url|text>``: group 1 the URL, group 2 the text."""
MRKDWN_MENTION = re.compile(r"<([@#])([A-Z0-9]+)>")
"""A person (``<@U…>``) or channel (``<#C…>``) in Slack mrkdwn: the sigil and the id."""
MRKDWN_BOLD = re.compile(r"(?<![\w*`])\*([^*\n]+)\*(?![\w*])")
"""``*bold*`` in Slack mrkdwn (not inside a word or right after a backtick)."""
SAFE_URL = re.compile(r"^https?://[^\s<>|]+$")
SECRET_PATTERNS = (
    re.compile(r"xox[a-z]-[A-Za-z0-9-]+"),  # Slack tokens
    re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"),  # GitHub tokens
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in URLs
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


def duration(seconds: float | None) -> str:
    """``4.2s``, ``12s``, ``3m 05s``, ``1h 02m``; empty for no time."""
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


def _code(text: str) -> str:
    """Inline code for user text: escaped, and with no backtick to break out of the span."""
    return "`" + escape_mrkdwn(text.replace("`", "ˋ")) + "`"


def _plain(text: str, limit: int) -> dict[str, str]:
    return {"type": "plain_text", "text": clip(text, limit) or " "}


def _mrkdwn(text: str, limit: int = SECTION_LIMIT) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def who(requested_by: str | None) -> str:
    """A Slack user id as a mention; anyone else's name as escaped text."""
    name = requested_by or "someone"
    return f"<@{name}>" if SLACK_USER_ID.match(name) else escape_mrkdwn(name)


# --------------------------------------------------------------------------- the card
def _environment(card: DeploySummary) -> str:
    name = escape_mrkdwn(card.environment)
    url = card.environment_url
    if isinstance(url, str) and SAFE_URL.match(url) and len(url) <= 2000:
        return f"<{escape_mrkdwn(url)}|{name}>"
    return name


def _hosts(hosts: list[str]) -> str:
    shown = ", ".join(hosts[:HOSTS_SHOWN])
    more = f" (+{len(hosts) - HOSTS_SHOWN} more)" if len(hosts) > HOSTS_SHOWN else ""
    return escape_mrkdwn(shown + more) if hosts else "–"


def _state(card: DeploySummary) -> str:
    label = OUTCOMES.get(card.outcome, OUTCOMES["error"])[2]
    running = card.running_step
    detail = f" – {escape_mrkdwn(running.name)}" if running else ""
    elapsed = duration(card.elapsed or None)
    timing = f" · {elapsed}" if elapsed else ""
    return f"{label}{detail}\n{card.finished_steps}/{len(card.steps)} steps{timing}"


def _summary_block(card: DeploySummary) -> dict[str, Any]:
    emoji, verb, _ = OUTCOMES.get(card.outcome, OUTCOMES["error"])
    headline = f"{emoji} *{verb}* {_code(card.ref)} to *{escape_mrkdwn(card.environment)}*"
    fields = [
        f"*Requested by*\n{who(card.requested_by)}",
        f"*Environment*\n{_environment(card)}",
        f"*Hosts*\n{_hosts(card.hosts)}",
        f"*State*\n{_state(card)}",
    ]
    if card.sha:
        fields.append(f"*Commit*\n{_code(card.sha[:12])}")
    if card.change is not None:
        fields.append(f"*Changes*\n{change_line(card.change)}")
    if card.deployment_id is not None:
        fields.append(f"*GitHub deployment*\n#{card.deployment_id}")
    if card.pull_request_url and SAFE_URL.match(card.pull_request_url):
        number = card.pull_request_url.rstrip("/").rsplit("/", 1)[-1]
        fields.append(
            f"*Asked on*\n<{card.pull_request_url}|pull request #{escape_mrkdwn(number)}>"
        )
    return {
        "type": "section",
        "block_id": "deploy_summary",
        "text": _mrkdwn(headline),
        "fields": [_mrkdwn(f, FIELD_LIMIT) for f in fields],
    }


def change_line(change: Change) -> str:
    """``3 commits added, 1 removed (<url|compare>)``; the link only when it is a web URL."""
    url = change.url
    compare = f" (<{url}|compare>)" if url and SAFE_URL.match(url) else ""
    return f"{change.words}{compare}"


def _step_line(step: Step) -> str:
    emoji = STEP_EMOJI.get(step.state, ":grey_question:")
    timing = duration(step.seconds)
    suffix = f"  `{timing}`" if timing else ""
    marker = f"  _{step.state}_" if step.state in ("skipped", "cached", "failed") else ""
    return f"{emoji} {escape_mrkdwn(step.name)}{marker}{suffix}"


def _steps_block(card: DeploySummary) -> dict[str, Any] | None:
    if not card.steps:
        return None
    text = "\n".join(_step_line(s) for s in card.steps)
    return {"type": "section", "block_id": "deploy_steps", "text": _mrkdwn(text)}


def error_excerpt(error: str) -> str:
    """The first lines of ``error``, secrets redacted, mrkdwn-escaped and safe in a code block."""
    lines = redact_secrets(error.replace("\r\n", "\n")).strip().split("\n")
    head = "\n".join(lines[:ERROR_EXCERPT_LINES])
    more = "\n…" if len(lines) > ERROR_EXCERPT_LINES else ""
    escaped = escape_mrkdwn(head.replace("```", "ˋˋˋ"))
    return clip(escaped, ERROR_EXCERPT_CHARS) + more


def since(iso: str) -> str:
    """``10:42 UTC`` for an ISO time; the text itself if it is none."""
    try:
        return datetime.fromisoformat(iso).strftime("%H:%M %Z").strip()
    except ValueError:
        return iso


def waiting_line(holder: SlotHolder) -> str:
    """``:hourglass: Waiting for <run|shop@x → staging> (deploy of shop@x by @alice since
    10:42 UTC) — abort it with `/deploy abort shop in staging```."""
    title = escape_mrkdwn(holder.title)
    url = holder.run_url
    run = f"<{url}|{title}>" if isinstance(url, str) and SAFE_URL.match(url) else title
    what = f"{holder.kind} of {holder.app}@{holder.ref}"
    when = f" since {since(holder.since)}" if holder.since else ""
    abort = _code(f"/deploy abort {holder.app} in {holder.environment}")
    return (
        f":hourglass: Waiting for {run} ({escape_mrkdwn(what)} by {who(holder.requested_by)}"
        f"{when}) — abort it with {abort}"
    )


def _waiting_block(card: DeploySummary) -> dict[str, Any] | None:
    if card.outcome is not None or card.waiting_for is None:
        return None
    text = _mrkdwn(waiting_line(card.waiting_for), FIELD_LIMIT)
    return {"type": "context", "block_id": "deploy_waiting", "elements": [text]}


def _error_block(card: DeploySummary) -> dict[str, Any] | None:
    if card.outcome not in ("failure", "error") or not card.error:
        return None
    text = f"*What went wrong*\n```{error_excerpt(card.error)}```"
    return {"type": "section", "block_id": "deploy_error", "text": _mrkdwn(text)}


def _confirmed_button(
    action_id: str, label: str, value: str, title: str, question: str
) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": _plain(label, 75),
        "style": "danger",
        "value": value,
        "confirm": {
            "title": _plain(title, 100),
            "text": _mrkdwn(question, 300),
            "confirm": _plain(label, 30),
            "deny": _plain("Cancel", 30),
        },
    }


def _target_value(card: DeploySummary) -> str | None:
    """The app environment a button acts on, as its value (None when there is none, or it is
    longer than Slack's 2000 characters)."""
    value = json.dumps({"app": card.app, "environment": card.environment}, separators=(",", ":"))
    if not card.app or not card.environment or len(value) > 2000:
        return None
    return value


def _rollback_button(card: DeploySummary) -> dict[str, Any] | None:
    value = _target_value(card)
    if value is None:
        return None
    question = (
        f"Switch *{escape_mrkdwn(card.environment)}* back to the release of "
        f"*{escape_mrkdwn(card.app)}* that ran before this deploy? Nothing is rebuilt."
    )
    return _confirmed_button(
        "rollback", "Roll back", value, f"Roll back {card.environment}?", question
    )


def _abort_button(card: DeploySummary) -> dict[str, Any] | None:
    """Offered while the deploy runs: stop it, and switch back the hosts it switched."""
    value = _target_value(card)
    if value is None:
        return None
    question = (
        f"Stop *{escape_mrkdwn(card.title)}*? Hosts it switched go back to the release they "
        "ran before."
    )
    return _confirmed_button("abort", "Abort", value, "Abort this deploy?", question)


def _deploy_anyway_button(card: DeploySummary) -> dict[str, Any] | None:
    """Offered when GitHub refused the deploy because required checks are not green."""
    parameters = card.force_parameters
    value = json.dumps(parameters, separators=(",", ":")) if parameters else ""
    if not value or len(value) > 2000:
        return None
    question = f"Deploy *{escape_mrkdwn(card.title)}* although its required checks are not green?"
    return _confirmed_button("deploy_anyway", "Deploy anyway", value, "Skip the checks?", question)


def _actions_block(card: DeploySummary) -> dict[str, Any] | None:
    elements: list[dict[str, Any]] = []
    url = card.run_url
    if isinstance(url, str) and SAFE_URL.match(url) and len(url) <= 3000:
        view = {"type": "button", "action_id": "view_run", "text": _plain("View run", 75)}
        elements.append({**view, "url": url})
    extra = {
        None: _abort_button,
        "success": _rollback_button,
        "failure": _deploy_anyway_button,
    }.get(card.outcome)
    button = extra(card) if extra else None
    elements += [button] if button else []
    if not elements:
        return None
    return {"type": "actions", "block_id": "deploy_actions", "elements": elements}


def _fallback_text(card: DeploySummary) -> str:
    label = OUTCOMES.get(card.outcome, OUTCOMES["error"])[2]
    text = f"Deploy {escape_mrkdwn(card.title)}: {label} (requested by {who(card.requested_by)})"
    return clip(text, TEXT_LIMIT)


def render_deploy_message(card: DeploySummary) -> tuple[str, list[dict[str, Any]]]:
    """The deploy card for ``card``: ``(fallback text, Block Kit blocks)``; see the module."""
    header = {
        "type": "header",
        "block_id": "deploy_header",
        "text": _plain(card.title, HEADER_LIMIT),
    }
    optional = (
        _waiting_block(card),
        _summary_block(card),
        _steps_block(card),
        _error_block(card),
        _actions_block(card),
    )
    blocks = [header, *(b for b in optional if b is not None)]
    return _fallback_text(card), blocks
