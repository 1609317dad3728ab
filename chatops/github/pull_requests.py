"""Requests typed on pull requests (``.deploy to staging``), answered on the pull request.

GitHub sends an ``issue_comment`` webhook for every new comment. :func:`read_comment` keeps those
meant for us, before the delivery is answered, and ignores every other one silently (200):
another action than ``created``, a comment on an issue rather than a pull request, a comment by
a bot (a ``Bot`` account or a ``…[bot]`` login), a first line that is not one of the ``.``
commands of :func:`chatops.grammar.parse_pull_request`.

:func:`answer` then does the rest in the background, where the question was asked:

1. an ``eyes`` reaction on the comment, at once;
2. may its author write to the repository (GitHub's collaborator permission)? If not, one
   comment says so and nothing else happens;
3. the app is the repository's (the one that has the environment named, or its only app), and
   for ``.deploy`` and ``.noop`` the ref is the pull request's head, ``pull/N/head`` (a fork's
   too), at the head commit GitHub names now;
4. one comment answers. A ``.deploy`` hands it to its run (and gets a ``rocket``): the flow
   keeps it up to date with the run link, steps and result. Everything else (``.noop``'s plan,
   ``.lock``, ``.unlock``, ``.wcid``, ``.help``, a refusal) is the chat's answer, in Markdown.

After that, requests from a pull request are requests like any other (:mod:`chatops.answers`):
``via`` is ``github`` and the requester the commenter's login, so the environment's locks and
freezes apply, and the deploy flow checks them again.
"""

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from adapters.pull_request import (
    PULL_REF,
    PullRequestComment,
    edit_comment,
    may_write,
    post_comment,
    pull_request_head,
    react,
)
from blocks import GitHubAccess
from chatops.answers import Answers, Reply
from chatops.catalog import Snapshot
from chatops.github.events import BadDelivery, Delivery, Ignored, as_dict, repository_of
from chatops.grammar import PULL_REQUEST_HELP, Command, CommandError, parse_pull_request
from chatops.intake import ReplyTo
from chatops.notify import configured_block
from chatops.request import Refused, Request, Requester
from render.pull_request import markdown, plain

logger = logging.getLogger("chatops.github")

T = TypeVar("T")
LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
PAGE = re.compile(r"https?://[^\s()<>]+")
REMEMBERED = 1000
"""How many answered comments the gateway remembers, so a redelivery is not answered twice."""
WAIT_SECONDS = 10.0
"""How long an answer waits for its run to start before saying "queued"."""


@dataclass(frozen=True)
class Asked:
    """One comment meant for us: who typed what on which pull request. ``command`` is None
    when the text could not be read; ``error`` then says why (the answer shows it)."""

    repository: str
    number: int
    comment_id: int
    login: str
    url: str
    text: str
    command: Command | None
    error: str | None = None


def read_comment(delivery: Delivery) -> Asked:
    """The request an ``issue_comment`` delivery carries, or :class:`Ignored` (with why)."""
    payload = delivery.payload
    if payload.get("action") != "created":
        raise Ignored(f"issue_comment action {str(payload.get('action'))[:40]!r} is not used")
    issue, comment = as_dict(payload.get("issue")), as_dict(payload.get("comment"))
    if not isinstance(issue.get("pull_request"), dict):
        raise Ignored("a comment on an issue, not on a pull request")
    author = as_dict(comment.get("user")) or as_dict(payload.get("sender"))
    login = author.get("login")
    if author.get("type") == "Bot" or not isinstance(login, str) or login.endswith("[bot]"):
        raise Ignored("comments by bots are not read")
    body = comment.get("body")
    text = body.strip().split("\n", 1)[0].strip() if isinstance(body, str) else ""
    try:
        command, error = parse_pull_request(text), None
    except CommandError as exc:
        command, error = None, str(exc)
    if command is None and error is None:
        raise Ignored("not a command (commands start with `.`, e.g. `.deploy to staging`)")
    if not LOGIN.fullmatch(login):
        raise BadDelivery("comment.user.login is not a GitHub login")
    return Asked(
        repository=repository_of(payload),
        number=_positive(issue.get("number"), "issue.number"),
        comment_id=_positive(comment.get("id"), "comment.id"),
        login=login,
        url=_page(issue.get("html_url")),
        text=text,
        command=command,
        error=error,
    )


class Remembered:
    """The comments answered lately (a redelivered one is not answered twice)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._seen: OrderedDict[int, None] = OrderedDict()

    def first_time(self, comment_id: int) -> bool:
        if comment_id in self._seen:
            return False
        self._seen[comment_id] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


async def answer(asked: Asked, answers: Answers, snapshot: Callable[[], Snapshot]) -> None:
    """Answer ``asked`` on its pull request; see the module docstring. Never raises: what
    goes wrong talking to GitHub is logged."""
    access = await configured_block(GitHubAccess)
    if access is None:
        logger.warning(
            "A pull request comment asked %r, but there is no chatops-github/default block to "
            "answer it with",
            asked.text,
        )
        return
    desk = _Desk(access, asked)
    try:
        await desk.answer(answers, snapshot)
    except Exception:
        logger.exception("Answering %r on %s#%s failed", asked.text, asked.repository, asked.number)


class _Desk:
    """One comment being answered: GitHub's calls run in threads, in the order above."""

    def __init__(self, access: GitHubAccess, asked: Asked) -> None:
        self.access = access
        self.asked = asked

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, self.access, self.asked.repository, *args)

    async def answer(self, answers: Answers, snapshot: Callable[[], Snapshot]) -> None:
        asked = self.asked
        await self.react("eyes")
        if not await self.call(may_write, asked.login):
            await self.comment(
                f":no_entry: @{asked.login}, only people with write access to "
                f"{plain(asked.repository)} can deploy from a pull request; nothing was done."
            )
            return
        if asked.command is None:
            # Our own words around the typed text: keep the `code`, but ping nobody.
            error = markdown(asked.error or "").replace("@", "@\u200b")
            await self.comment(f":grey_question: {error}\n\n{_help()}")
            return
        if asked.command.action == "help":
            await self.comment(_help())
            return
        try:
            reply = await self.run(asked.command, answers, snapshot())
        except Refused as exc:
            await self.comment(markdown(str(exc)))
            return
        if reply is not None:
            await self.comment(markdown(reply.text))

    async def react(self, content: str) -> None:
        """A reaction is a courtesy: GitHub refusing one stops nothing."""
        try:
            await self.call(react, self.asked.comment_id, content)
        except Exception as exc:  # noqa: BLE001 - any failure of GitHub's
            logger.warning(
                "Could not react %s to comment %s: %s", content, self.asked.comment_id, exc
            )

    async def comment(self, body: str) -> int:
        return await self.call(post_comment, self.asked.number, body)

    async def run(self, command: Command, answers: Answers, config: Snapshot) -> Reply | None:
        """Carry out ``command`` for this pull request; the reply to post (None when the
        reply is posted already, or the deploy's run keeps it)."""
        asked = self.asked
        apps = _apps(config, asked.repository, command.environment)
        if command.action == "where":
            replies = [await self.ask(replace(command, app=name), answers) for name in apps]
            return Reply("\n\n".join(reply.text for reply in replies))
        if len(apps) > 1:
            raise Refused(
                f"{plain(asked.repository)} is deployed as {', '.join(apps)}: name the "
                "environment, e.g. `.deploy to staging`."
            )
        command = replace(command, app=apps[0])
        if command.action not in ("deploy", "noop"):
            return await self.ask(command, answers)
        head = await self.call(pull_request_head, asked.number)
        if not head.open:
            raise Refused(f"Pull request #{asked.number} is closed: nothing was deployed.")
        command = replace(command, ref=PULL_REF.format(number=asked.number))
        if command.action == "noop":
            await self.dry_run(command, answers)
            return None
        sha = head.sha
        comment_id = await self.comment(
            f":eyes: {plain(asked.login)} asked to deploy this pull request (`{sha[:12]}`)"
            f"{f' to {plain(command.environment)}' if command.environment else ''}: starting…"
        )
        pull_request = PullRequestComment(asked.repository, asked.number, comment_id, asked.url)
        reply = await answers.answer(
            self.request(command, sha=sha, pull_request=pull_request), ReplyTo(), WAIT_SECONDS
        )
        started = reply.ok and reply.ticket is not None and reply.ticket.state != "failed"
        if started:
            await self.react("rocket")
        if not started or (reply.ticket and reply.ticket.run_id is None):
            # Refused, or queued: say so until the run takes the comment over.
            await self.call(edit_comment, comment_id, markdown(reply.text))
        return None

    async def ask(self, command: Command, answers: Answers) -> Reply:
        """The chat's answer to ``command``, asked as the commenter."""
        return await answers.answer(self.request(command), ReplyTo(), WAIT_SECONDS)

    async def dry_run(self, command: Command, answers: Answers) -> None:
        """A dry run takes a while: a comment says so at once, and its plan replaces it."""
        where = plain(command.environment or "the default environment")
        comment_id = await self.comment(
            f":hourglass: Dry run of this pull request to {where}: checking…"
        )
        reply = await self.ask(command, answers)
        await self.call(edit_comment, comment_id, markdown(reply.text))

    def request(self, command: Command, **known: Any) -> Request:
        return Request(
            Requester("github", self.asked.login),
            command,
            key=f"github-comment-{self.asked.comment_id}",
            **known,
        )


def _help() -> str:
    return f"```\n{PULL_REQUEST_HELP}\n```"


def _apps(config: Snapshot, repository: str, environment: str | None) -> list[str]:
    """The apps of ``repository`` a command may mean: those with ``environment`` (all when
    none is named); Refused when there is none."""
    apps = config.apps_for_repository(repository)
    if not apps:
        raise Refused(f"{repository} is not configured in chatops.")
    if environment is None:
        return [name for name, _ in apps]
    having = [name for name, _ in apps if config.environment(name, environment) is not None]
    if not having:
        raise Refused(f"No app of {repository} has an environment *{environment}*.")
    return having


def _positive(value: Any, what: str) -> int:
    if type(value) is not int or value <= 0:
        raise BadDelivery(f"{what} is not a positive integer")
    return value


def _page(value: Any) -> str:
    if not isinstance(value, str) or not PAGE.fullmatch(value):
        raise BadDelivery("issue.html_url is not a web address")
    return value
