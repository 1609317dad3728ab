"""Answers on a pull request: a reaction, who may write, the head to deploy, and the one comment.

A request typed on a pull request (``.deploy to staging``) is answered where it was asked: the
gateway reacts to the comment at once, asks GitHub whether its author may write to the
repository, reads the pull request's head and posts one comment; the deploy flow then keeps that
comment up to date with the run link, the steps and the result (:func:`comment_markdown`), as it
keeps the Slack card. Everything here is a plain GitHub call; the layers above decide when.

Text comes in the chat's Slack mrkdwn (:mod:`chatops.answers`) and goes out as GitHub Markdown
(:func:`markdown`)::

    >>> markdown("*shop* is at <https://x.example/1|run 1>; ask <@U012ABCDEF>, :lock: &lt;b&gt;")
    '**shop** is at [run 1](https://x.example/1); ask U012ABCDEF, :lock: &lt;b&gt;'
"""

import re
from dataclasses import dataclass

import github.IssueComment
from github import GithubException

from blocks.github import GitHubAccess
from tasks.github import github_client
from tasks.slack_card import OUTCOMES, duration, redact_secrets
from tasks.summary import DeploySummary, SlotHolder, Step

WRITE_PERMISSIONS = frozenset({"admin", "write"})
"""What GitHub's "collaborator permission" says of someone who may push (``maintain`` is
reported as ``write``)."""
COMMENT_LIMIT = 65536
"""GitHub refuses longer comment bodies."""
PULL_REF = "pull/{number}/head"
"""The ref a pull request's head is deployed as: GitHub keeps ``refs/pull/N/head`` in the base
repository for every pull request, a fork's too, and a mirror clone fetches it."""

STEP_MARKS = {
    "pending": ":white_circle:",
    "running": ":hourglass_flowing_sand:",
    "done": ":white_check_mark:",
    "failed": ":x:",
    "skipped": ":fast_forward:",
    "cached": ":recycle:",
}
_SLACK_LINK = re.compile(r"<(https?://[^|>\s]+)\|([^>]*)>")
_SLACK_MENTION = re.compile(r"<[@#]([A-Z0-9]+)>")
_SLACK_BOLD = re.compile(r"(?<![\w*`])\*([^*\n]+)\*(?![\w*])")


@dataclass(frozen=True)
class PullRequestComment:
    """Where a request from a pull request is answered: the comment this system posted on pull
    request ``number`` of ``repository`` (``url`` is the pull request's page)."""

    repository: str
    number: int
    comment_id: int
    url: str


@dataclass(frozen=True)
class PullRequestHead:
    """What a pull request would deploy: its head commit, and whether it is still open."""

    sha: str
    open: bool
    label: str


def may_write(access: GitHubAccess, repository: str, login: str) -> bool:
    """Whether ``login`` may push to ``repository`` (GitHub's collaborator permission)."""
    repo = github_client(access, lazy=True).get_repo(repository)
    try:
        return repo.get_collaborator_permission(login) in WRITE_PERMISSIONS
    except GithubException as exc:
        if exc.status == 404:  # not a user GitHub knows: no permission at all
            return False
        raise


def pull_request_head(access: GitHubAccess, repository: str, number: int) -> PullRequestHead:
    """The head commit of pull request ``number`` (a fork's head too) and its state."""
    pull = github_client(access, lazy=True).get_repo(repository).get_pull(number)
    return PullRequestHead(sha=pull.head.sha, open=pull.state == "open", label=pull.head.label)


def react(access: GitHubAccess, repository: str, comment_id: int, content: str) -> None:
    """Add reaction ``content`` (``eyes``, ``rocket``, ...) to an issue comment."""
    _comment(access, repository, comment_id).create_reaction(content)


def post_comment(access: GitHubAccess, repository: str, number: int, body: str) -> int:
    """Comment on pull request ``number``; the new comment's id."""
    issue = github_client(access, lazy=True).get_repo(repository).get_issue(number)
    return issue.create_comment(_fit(body)).id


def edit_comment(access: GitHubAccess, repository: str, comment_id: int, body: str) -> None:
    """Replace the text of the comment ``comment_id`` (one this system posted)."""
    _comment(access, repository, comment_id).edit(_fit(body))


def _comment(
    access: GitHubAccess, repository: str, comment_id: int
) -> github.IssueComment.IssueComment:
    repo = github_client(access, lazy=True).get_repo(repository)
    url = f"{repo.url}/issues/comments/{int(comment_id)}"
    return github.IssueComment.IssueComment(repo.requester, url=url)


def _fit(body: str) -> str:
    return body if len(body) <= COMMENT_LIMIT else body[: COMMENT_LIMIT - 1] + "…"


# --------------------------------------------------------------------------- text
def markdown(mrkdwn: str) -> str:
    """Slack mrkdwn as GitHub Markdown: ``*bold*``, ``<url|text>`` links, mentions as plain
    ids (a Slack id means nothing on GitHub). Emoji codes and HTML entities read the same."""
    text = _SLACK_LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", mrkdwn)
    text = _SLACK_MENTION.sub(lambda m: m.group(1), text)
    return _SLACK_BOLD.sub(lambda m: f"**{m.group(1)}**", text)


def plain(text: str) -> str:
    """User text (a ref, a host, a login) shown as typed: no Markdown, no HTML, no ``@`` pings."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = re.sub(r"([\\`*_\[\]()#|~])", r"\\\1", escaped)
    return escaped.replace("@", "@\u200b")


def comment_markdown(card: DeploySummary) -> str:
    """The deploy as a pull request comment: the same facts as the Slack card (title, who,
    where, the run link, every step with its time, the result and what went wrong)."""
    emoji, verb, label = OUTCOMES.get(card.outcome, OUTCOMES["error"])
    lines = [
        f"{emoji} **{verb}** `{_code(card.title)}` — {label}",
        "",
        f"Requested by {plain(card.requested_by or 'someone')} · environment "
        f"{_environment(card)} · hosts {plain(', '.join(card.hosts) or '–')}",
    ]
    if card.sha:
        lines.append(f"Commit `{card.sha[:12]}`")
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
    mark = STEP_MARKS.get(step.state, ":grey_question:")
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
