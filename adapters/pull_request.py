"""Answers on a pull request: a reaction, who may write, the head to deploy, and the one comment.

A request typed on a pull request (``.deploy to staging``) is answered where it was asked: the
gateway reacts to the comment at once, asks GitHub whether its author may write to the
repository, reads the pull request's head and posts one comment; the deploy flow then keeps that
comment up to date with the run link, the steps and the result, as it keeps the Slack card.
Everything here is a plain GitHub call; the layers above decide when, and what the comment says
(:mod:`render.pull_request`).
"""

from dataclasses import dataclass

import github.IssueComment
from github import GithubException

from adapters.github import github_client
from blocks.github import GitHubAccess

WRITE_PERMISSIONS = frozenset({"admin", "write"})
"""What GitHub's "collaborator permission" says of someone who may push (``maintain`` is
reported as ``write``)."""
COMMENT_LIMIT = 65536
"""GitHub refuses longer comment bodies."""
PULL_REF = "pull/{number}/head"
"""The ref a pull request's head is deployed as: GitHub keeps ``refs/pull/N/head`` in the base
repository for every pull request, a fork's too, and a mirror clone fetches it."""


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
