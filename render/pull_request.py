"""A deploy as a pull request comment, and chat text as GitHub Markdown.

Text comes in the chat's Slack mrkdwn (:mod:`chatops.answers`) and goes out as GitHub Markdown
(:func:`markdown`)::

    >>> markdown("*shop* is at <https://x.example/1|run 1>; ask <@U012ABCDEF>, :lock: &lt;b&gt;")
    '**shop** is at [run 1](https://x.example/1); ask U012ABCDEF, :lock: &lt;b&gt;'
"""

import re

from model.summary import DeploySummary, SlotHolder, Step
from render.slack_card import (
    MRKDWN_BOLD,
    MRKDWN_LINK,
    MRKDWN_MENTION,
    OUTCOMES,
    STEP_EMOJI,
    change_line,
    duration,
    redact_secrets,
)


def markdown(mrkdwn: str) -> str:
    """Slack mrkdwn as GitHub Markdown: ``*bold*``, ``<url|text>`` links, mentions as plain
    ids (a Slack id means nothing on GitHub). Emoji codes and HTML entities read the same."""
    text = MRKDWN_LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", mrkdwn)
    text = MRKDWN_MENTION.sub(lambda m: m.group(2), text)
    return MRKDWN_BOLD.sub(lambda m: f"**{m.group(1)}**", text)


def plain(text: str) -> str:
    """User text (a ref, a host, a login) shown as typed: no Markdown, no HTML, no ``@`` pings."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = re.sub(r"([\\`*_\[\]()#|~])", r"\\\1", escaped)
    return escaped.replace("@", "@\u200b")


def comment_markdown(card: DeploySummary) -> str:
    """The deploy as a pull request comment: the same facts as the Slack card (title, who,
    where, what it changes with a compare link, the run link, every step with its time, the
    result and what went wrong)."""
    emoji, verb, label = OUTCOMES.get(card.outcome, OUTCOMES["error"])
    lines = [
        f"{emoji} **{verb}** `{_code(card.title)}` — {label}",
        "",
        f"Requested by {plain(card.requested_by or 'someone')} · environment "
        f"{_environment(card)} · hosts {plain(', '.join(card.hosts) or '–')}",
    ]
    if card.sha:
        lines.append(f"Commit `{card.sha[:12]}`")
    if card.change is not None:
        lines.append(f"Changes: {markdown(change_line(card.change))}")
    if card.run_url:
        lines.append(f"Run: [{plain(card.title)}]({card.run_url})")
    if card.outcome is None and card.waiting_for is not None:
        lines.append(_waiting(card.waiting_for))
    lines += ["", *(_step(step) for step in card.steps)]
    if card.outcome in ("failure", "error") and card.error:
        lines += ["", "**What went wrong**", "```", _excerpt(card.error), "```"]
    return "\n".join(lines)


def _environment(card: DeploySummary) -> str:
    name = plain(card.environment)
    url = card.environment_url
    if isinstance(url, str) and re.fullmatch(r"https?://[^\s()<>]+", url):
        return f"[{name}]({url})"
    return name


def _step(step: Step) -> str:
    mark = STEP_EMOJI.get(step.state, ":grey_question:")
    state = f" _{step.state}_" if step.state in ("skipped", "cached", "failed") else ""
    timing = duration(step.seconds)
    return f"- {mark} {plain(step.name)}{state}{f' `{timing}`' if timing else ''}"


def _waiting(holder: SlotHolder) -> str:
    title = plain(holder.title)
    run = f"[{title}]({holder.run_url})" if holder.run_url else title
    return f":hourglass: Waiting for {run} ({holder.kind} by {plain(holder.requested_by)})"


def _code(text: str) -> str:
    return text.replace("`", "ˋ")


def _excerpt(error: str) -> str:
    """The failure's first lines, secrets redacted, safe inside a fenced block."""
    lines = redact_secrets(error.replace("\r\n", "\n")).strip().split("\n")
    return "\n".join(lines[:12]).replace("```", "ˋˋˋ")
