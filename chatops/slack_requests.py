"""Slack: a verified ``/deploy`` command or button click, turned into a reply and maybe a run.

The gateway has already checked the signature. From here:

1. :func:`slash_command` / :func:`block_action` read the form into plain dataclasses
   (:class:`BadRequest` → HTTP 400 for anything malformed);
2. :meth:`SlackRequests.command` parses the text with :func:`chatops.commands.parse` and hands
   the :class:`~chatops.commands.Command` to one method per action (``_deploy``, ``_lock``, ...);
3. those check it against the in-memory configuration (:mod:`chatops.catalog`): unknown app or
   environment, hosts or tasks the app does not have, and whether this user in this channel may
   deploy there (``Environment.allowed_users`` / ``allowed_channels``; empty means everyone);
4. what needs the Prefect API (locks, starting the run, history) runs under a time budget:
   finished in time, its answer is the HTTP reply; otherwise the reply says "starting…" and
   the answer follows through the command's ``response_url``.

Every answer is a :class:`Reply`. Errors a user can act on become short replies (ephemeral);
deploys, rollbacks and lock changes are announced in the channel. A deploy started from Slack
gets ``notify={"channel": <channel id>, "thread_ts": None}``: the flow then posts its own
message in that channel and keeps it up to date.
"""

import asyncio
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.utilities.urls import url_for
from slack_sdk.webhook import WebhookClient

from blocks.app import App
from blocks.environment import Environment
from chatops.catalog import Catalog
from chatops.commands import HELP_TEXT, Command, CommandError, parse, validate_name, validate_ref
from chatops.locks import Lock, LockHeld, Locks, LocksUnavailable
from chatops.starter import Background, RunRequest, Starter, deploy_run, rollback_run
from tasks import history
from tasks.slack import escape_mrkdwn

logger = logging.getLogger("chatops.slack")

SLACK_ID = re.compile(r"[A-Z0-9]{2,40}")
"""User, channel and team ids as Slack writes them (``U024BE7LH``, ``C2147483705``)."""
MAX_FIELDS = 64
START_TIMEOUT = 60.0
"""Seconds a start or query may take in the background before we give up and say so."""
QUERY_RUNS = 5
SLOW_NOTE = "(Prefect is slow to answer; I'll post the result here.)"
"""Ends a reply sent at the end of the time budget; the real answer follows at response_url."""


class BadRequest(Exception):
    """The request is malformed (HTTP 400); the message is safe to return."""


class Refusal(Exception):
    """A request we will not carry out; the message is the reply, written for the user."""


@dataclass(frozen=True)
class Reply:
    """A message for the user who asked; ``public`` ones are shown to the whole channel."""

    text: str
    public: bool = False

    def body(self) -> dict[str, Any]:
        """The JSON Slack expects as a slash-command response or a response_url post."""
        return {"response_type": "in_channel" if self.public else "ephemeral", "text": self.text}


@dataclass(frozen=True)
class Requester:
    """Who asked, from which channel, and where later answers go."""

    user_id: str
    channel_id: str
    response_url: str
    trigger_id: str | None

    @property
    def idempotency_key(self) -> str | None:
        """One run per Slack interaction: Slack gives each one a fresh ``trigger_id``."""
        return f"slack-{self.trigger_id}" if self.trigger_id else None

    @property
    def mention(self) -> str:
        return f"<@{self.user_id}>"


@dataclass(frozen=True)
class SlashCommand:
    text: str
    requester: Requester


@dataclass(frozen=True)
class BlockAction:
    """The first action of a ``block_actions`` payload (a button click)."""

    action_id: str
    value: str | None
    requester: Requester


# --------------------------------------------------------------------------- reading requests
def read_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value of each field)."""
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the body is not a valid url-encoded form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def slash_command(form: dict[str, str]) -> SlashCommand:
    """The fields of a slash command we use; the deprecated ``token`` is ignored."""
    if "text" not in form:
        raise BadRequest("the form has no text field")
    return SlashCommand(
        form["text"],
        _requester(
            form.get("user_id"),
            form.get("channel_id"),
            form.get("response_url"),
            form.get("trigger_id"),
        ),
    )


def block_action(form: dict[str, str]) -> BlockAction | None:
    """The clicked button of an interaction (``payload=<json>``); None for other interactions."""
    try:
        payload = json.loads(form["payload"])
    except (KeyError, ValueError, RecursionError):
        raise BadRequest("the form has no valid JSON payload field") from None
    if not isinstance(payload, dict):
        raise BadRequest("the payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise BadRequest("block_actions without actions")
    action = actions[0]
    action_id, value = action.get("action_id"), action.get("value")
    if not isinstance(action_id, str) or not (value is None or isinstance(value, str)):
        raise BadRequest("the action has no action_id")
    channel = _dict(payload.get("channel")).get("id") or _dict(payload.get("container")).get(
        "channel_id"
    )
    requester = _requester(
        _dict(payload.get("user")).get("id"),
        channel,
        payload.get("response_url"),
        payload.get("trigger_id"),
    )
    return BlockAction(action_id, value, requester)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _requester(user_id: Any, channel_id: Any, response_url: Any, trigger_id: Any) -> Requester:
    if not isinstance(user_id, str) or not SLACK_ID.fullmatch(user_id):
        raise BadRequest("missing or malformed user_id")
    if not isinstance(channel_id, str) or not SLACK_ID.fullmatch(channel_id):
        raise BadRequest("missing or malformed channel_id")
    if not isinstance(response_url, str) or not re.fullmatch(
        r"https?://[^\s<>|]{1,2000}", response_url
    ):
        raise BadRequest("missing or malformed response_url")
    trigger = (
        trigger_id
        if isinstance(trigger_id, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,200}", trigger_id)
        else None
    )
    return Requester(user_id, channel_id, response_url, trigger)


# --------------------------------------------------------------------------- collaborators
class Responder(Protocol):
    """Posts a later answer to a ``response_url``."""

    async def send(self, response_url: str, reply: Reply) -> None: ...


class WebhookResponder:
    """Posts with slack_sdk's ``WebhookClient``; a failed post is logged, never raised."""

    def __init__(self, timeout: int = 10) -> None:
        self.timeout = timeout

    async def send(self, response_url: str, reply: Reply) -> None:
        def post() -> int:
            client = WebhookClient(response_url, timeout=self.timeout)
            body = reply.body()
            return client.send(
                text=body["text"], response_type=body["response_type"], replace_original=False
            ).status_code

        try:
            status = await asyncio.to_thread(post)
        except Exception as exc:  # the URL is a credential of sorts: never logged
            logger.warning("Posting to a response_url failed: %s", type(exc).__name__)
            return
        if status != 200:
            logger.warning("A response_url answered HTTP %s", status)


class History(Protocol):
    """What has been deployed: the source of ``status``, ``latest`` and ``deploys``."""

    async def deployed(self) -> list[history.Deployed]: ...

    async def recent_runs(self, app: str, environment: str | None) -> list[dict[str, Any]]: ...


class PrefectHistory:
    """Deploy history from the Prefect API (artifacts and flow runs)."""

    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    async def deployed(self) -> list[history.Deployed]:
        return await asyncio.to_thread(history.deployed_everywhere)

    async def recent_runs(self, app: str, environment: str | None) -> list[dict[str, Any]]:
        """The newest runs tagged with the app (and environment), as plain dicts."""
        tags = [f"app:{app}"] + ([f"env:{environment}"] if environment else [])
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags)),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=50,
        )
        return [
            {
                "name": run.name,
                "state": run.state_name or "unknown",
                "ref": run.parameters.get("ref"),
                "by": run.parameters.get("requested_by"),
                "when": run.expected_start_time,
                "url": url_for("flow-run", obj_id=run.id),
            }
            for run in runs
        ]


# --------------------------------------------------------------------------- the handler
class SlackRequests:
    """Answers slash commands and button clicks; see the module docstring for the path."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        locks: Locks,
        starter: Starter,
        background: Background,
        responder: Responder,
        history: History,
        deploy_deployment: str,
        rollback_deployment: str,
        budget: float = 2.0,
    ) -> None:
        self.catalog = catalog
        self.locks = locks
        self.starter = starter
        self.background = background
        self.responder = responder
        self.history = history
        self.deploy_deployment = deploy_deployment
        self.rollback_deployment = rollback_deployment
        self.budget = budget
        self._handlers: dict[str, Callable[[Command, Requester], Awaitable[Reply]]] = {
            "help": self._help,
            "where": self._where,
            "deploy": self._deploy,
            "rollback": self._rollback,
            "lock": self._lock,
            "unlock": self._unlock,
            "unlock_all": self._unlock_all,
            "check": self._check,
            "status": self._status,
            "latest": self._latest,
            "deploys": self._deploys,
        }

    async def command(self, slash: SlashCommand) -> Reply:
        """The immediate reply to a slash command (later ones go to its response_url)."""
        try:
            command = parse(slash.text)
        except CommandError as exc:
            return Reply(f"{escape_mrkdwn(str(exc))}\nType `/deploy help` for examples.")
        handler = self._handlers[command.action]
        try:
            return await handler(command, slash.requester)
        except Refusal as exc:
            return Reply(str(exc))
        except CommandError as exc:
            return Reply(escape_mrkdwn(str(exc)))
        except Exception:
            logger.exception("Slash command %r failed", command.action)
            return Reply("Something went wrong in the chatops gateway; its log has the details.")

    async def interaction(self, action: BlockAction) -> None:
        """Act on a button click in the background; the answer goes to its response_url."""
        if action.action_id in ("rollback", "deploy_anyway"):
            self.background.spawn(self._clicked(action), f"slack-{action.action_id}")

    # ---- commands that only read the configuration
    async def _help(self, command: Command, requester: Requester) -> Reply:
        return Reply(f"```{HELP_TEXT}```")

    async def _where(self, command: Command, requester: Requester) -> Reply:
        app = self._app(command.app)
        lines = [f"*{command.app}* deploys to:"]
        for name in app.environments:
            env = self.catalog.snapshot.environment(command.app, name)
            hosts = ", ".join(env.hosts) if env else "not configured"
            notes = [
                note
                for note, on in (
                    ("default", name == app.default_environment),
                    ("production", bool(env and env.production)),
                )
                if on
            ]
            rules = _permission_summary(env) if env else ""
            lines.append(
                f"• *{name}*{' (' + ', '.join(notes) + ')' if notes else ''}: "
                f"{escape_mrkdwn(hosts)}{rules}"
            )
        if not app.environments:
            lines.append("no environments are configured.")
        return Reply("\n".join(lines))

    # ---- deploy and rollback
    async def _deploy(self, command: Command, requester: Requester) -> Reply:
        assert command.app is not None
        app = self._app(command.app)
        name, env = self._environment(command.app, app, command.environment)
        self._check_hosts(command.hosts, env, command.app, name)
        self._check_task(command.task, app, command.app)
        self._check_permission(env, requester, command.app, name)
        request = deploy_run(
            app=command.app,
            environment=name,
            ref=command.ref or app.default_ref,
            requested_by=requester.user_id,
            force=command.force,
            hosts=command.hosts,
            task=command.task,
            notify=_notify(requester),
            key=requester.idempotency_key,
            deployment=self.deploy_deployment,
        )
        return await self._in_time(
            requester,
            self._start(request, requester, command.force),
            f"Starting {escape_mrkdwn(request.title)}…",
        )

    async def _rollback(self, command: Command, requester: Requester) -> Reply:
        assert command.app is not None
        app = self._app(command.app)
        name, env = self._environment(command.app, app, command.environment)
        self._check_hosts(command.hosts, env, command.app, name)
        self._check_permission(env, requester, command.app, name)
        request = rollback_run(
            app=command.app,
            environment=name,
            ref=command.ref,
            requested_by=requester.user_id,
            hosts=command.hosts,
            notify=_notify(requester),
            key=requester.idempotency_key,
            deployment=self.rollback_deployment,
        )
        return await self._in_time(
            requester,
            self._start(request, requester, command.force),
            f"Starting {escape_mrkdwn(request.title)}…",
        )

    async def _start(self, request: RunRequest, requester: Requester, force: bool) -> Reply:
        """Check the lock, then start the run; every outcome is a reply, never an exception."""
        app, environment = request.parameters["app"], request.parameters["environment"]
        verb = "roll back" if request.deployment == self.rollback_deployment else "deploy"
        try:
            held = await self.locks.blocking(app, environment, requester.user_id, force)
        except LocksUnavailable:
            return Reply(
                f"I could not check whether *{environment}* on *{app}* is locked (the "
                "Prefect API did not answer), so nothing was started. Try again."
            )
        if held is not None:
            return Reply(
                f":lock: {_describe_lock(held)}\nTo {verb} anyway, end the command with `!`."
            )
        try:
            run = await asyncio.wait_for(self.starter.start(request), START_TIMEOUT)
        except ObjectNotFound:
            return Reply(
                f"The Prefect deployment `{request.deployment}` does not exist: is the "
                "chatops runner (`chatops up`) running?"
            )
        except TimeoutError:
            return Reply(
                f"Prefect did not confirm the run of {escape_mrkdwn(request.title)} "
                f"within {START_TIMEOUT:.0f} s. Check the Prefect UI before retrying."
            )
        except Exception as exc:
            logger.warning("Starting %s failed: %s", request.deployment, type(exc).__name__)
            return Reply(
                f"Could not start {escape_mrkdwn(request.title)}: the Prefect API "
                f"failed ({type(exc).__name__}). Nothing was started."
            )
        link = f"<{run.url}|{escape_mrkdwn(run.name)}>" if run.url else f"`{run.name}`"
        hosts = request.parameters.get("hosts")
        where = f" (hosts: {escape_mrkdwn(', '.join(hosts))})" if hosts else ""
        doing = "is rolling back" if verb == "roll back" else "is deploying"
        forced = " (forced)" if request.parameters.get("force") else ""
        return Reply(
            f"{requester.mention} {doing} *{escape_mrkdwn(request.title)}*{where}"
            f"{forced}. Follow it: {link}",
            public=True,
        )

    # ---- locks
    async def _lock(self, command: Command, requester: Requester) -> Reply:
        app, environment = self._lockable(command, requester)

        async def take() -> Reply:
            try:
                replaced = await self.locks.take(
                    app, environment, requester.user_id, command.message, command.force
                )
            except LockHeld as exc:
                return Reply(
                    f":lock: {_describe_lock(exc.lock)}\nTake it over with "
                    f"`lock {environment} on {app}!`."
                )
            reason = f": {escape_mrkdwn(command.message)}" if command.message else ""
            taken = (
                f" (taken over from <@{replaced.by}>)"
                if replaced and replaced.by != requester.user_id
                else ""
            )
            return Reply(
                f":lock: {requester.mention} locked *{environment}* on *{app}*{reason}{taken}.",
                public=True,
            )

        return await self._in_time(requester, self._locks_reply(take), "Locking…")

    async def _unlock(self, command: Command, requester: Requester) -> Reply:
        app, environment = self._lockable(command, requester)

        async def release() -> Reply:
            try:
                removed = await self.locks.release(
                    app, environment, requester.user_id, command.force
                )
            except LockHeld as exc:
                return Reply(
                    f":lock: {_describe_lock(exc.lock)}\nRemove it anyway with "
                    f"`unlock {environment} on {app}!`."
                )
            if removed is None:
                return Reply(f"*{environment}* on *{app}* was not locked.")
            whose = f" (it was <@{removed.by}>'s)" if removed.by != requester.user_id else ""
            return Reply(
                f":unlock: {requester.mention} unlocked *{environment}* on *{app}*{whose}.",
                public=True,
            )

        return await self._in_time(requester, self._locks_reply(release), "Unlocking…")

    async def _unlock_all(self, command: Command, requester: Requester) -> Reply:
        if command.app is not None:
            self._app(command.app)

        async def release_all() -> Reply:
            removed, kept = [], []
            for lock in await self.locks.all():
                if command.app not in (None, lock.app):
                    continue
                env = self.catalog.snapshot.environment(lock.app, lock.environment)
                allowed = (
                    env is None
                    or _permission_problem(env, requester, lock.app, lock.environment) is None
                )
                if allowed and (lock.by == requester.user_id or command.force):
                    if await self.locks.release(
                        lock.app, lock.environment, requester.user_id, force=True
                    ):
                        removed.append(f"*{lock.environment}* on *{lock.app}*")
                else:
                    kept.append(_describe_lock(lock))
            text = (
                f":unlock: {requester.mention} unlocked {', '.join(removed)}."
                if removed
                else "No locks of yours to remove."
            )
            if kept:
                text += (
                    "\nStill locked (not yours, or you may not deploy there; `unlock all!`"
                    " removes others' locks):\n• " + "\n• ".join(kept)
                )
            return Reply(text, public=bool(removed))

        return await self._in_time(requester, self._locks_reply(release_all), "Unlocking…")

    async def _check(self, command: Command, requester: Requester) -> Reply:
        assert command.app is not None
        app = self._app(command.app)
        name, env = self._environment(command.app, app, command.environment)
        problem = _permission_problem(env, requester, command.app, name)

        async def check() -> Reply:
            if problem:
                return Reply(problem)
            held = await self.locks.blocking(command.app, name, requester.user_id)
            if held is not None:
                return Reply(
                    f":lock: {_describe_lock(held)}\nA deploy ending in `!` would go ahead anyway."
                )
            return Reply(f":white_check_mark: You can deploy *{command.app}* to *{name}* now.")

        return await self._in_time(requester, self._locks_reply(check), "Checking…")

    async def _locks_reply(self, work: Callable[[], Awaitable[Reply]]) -> Reply:
        try:
            return await work()
        except LocksUnavailable:
            return Reply(
                "The Prefect API did not answer in time, so the locks could not be "
                "read or changed. Try again."
            )

    def _lockable(self, command: Command, requester: Requester) -> tuple[str, str]:
        assert command.app is not None and command.environment is not None
        app = self._app(command.app)
        name, env = self._environment(command.app, app, command.environment)
        self._check_permission(env, requester, command.app, name)
        return command.app, name

    # ---- history
    async def _status(self, command: Command, requester: Requester) -> Reply:
        return await self._deployed_reply(command, requester, detailed=False)

    async def _latest(self, command: Command, requester: Requester) -> Reply:
        return await self._deployed_reply(command, requester, detailed=True)

    async def _deployed_reply(
        self, command: Command, requester: Requester, detailed: bool
    ) -> Reply:
        keys: set[str] | None = None
        if command.app is not None:
            app = self._app(command.app)
            names = app.environments
            if command.environment is not None:
                names = [self._environment(command.app, app, command.environment)[0]]
            keys = {history.deployed_key(command.app, name) for name in names}

        async def look() -> Reply:
            found = [d for d in await self.history.deployed() if keys is None or d.key in keys]
            if not found:
                return Reply("Nothing deployed there yet (as far as Prefect knows).")
            return Reply("\n".join(_deployed_text(d, detailed) for d in found))

        return await self._in_time(requester, self._query(look), "Looking…")

    async def _deploys(self, command: Command, requester: Requester) -> Reply:
        assert command.app is not None
        app = self._app(command.app)
        environment = None
        if command.environment is not None:
            environment = self._environment(command.app, app, command.environment)[0]

        async def look() -> Reply:
            runs = await self.history.recent_runs(command.app, environment)
            runs = [r for r in runs if command.ref in (None, r["ref"])][:QUERY_RUNS]
            if not runs:
                return Reply("No runs found.")
            return Reply("\n".join(_run_text(run) for run in runs))

        return await self._in_time(requester, self._query(look), "Looking…")

    async def _query(self, look: Callable[[], Awaitable[Reply]]) -> Reply:
        try:
            return await asyncio.wait_for(look(), START_TIMEOUT)
        except Exception as exc:
            logger.warning("A history query failed: %s", type(exc).__name__)
            return Reply("The Prefect API did not answer, so I cannot tell. Try again later.")

    # ---- buttons
    async def _clicked(self, action: BlockAction) -> None:
        requester = action.requester
        try:
            reply = await self._button(action)
        except Refusal as exc:
            reply = Reply(str(exc))
        except CommandError as exc:
            reply = Reply(f"This button's data is not valid: {escape_mrkdwn(str(exc))}")
        await self.responder.send(requester.response_url, reply)

    async def _button(self, action: BlockAction) -> Reply:
        """A click on "Roll back" or "Deploy anyway": the same checks as the typed command."""
        value = _button_value(action.value)
        requester = action.requester
        app_name = validate_name("app", value.get("app"))
        app = self._app(app_name)
        name, env = self._environment(
            app_name, app, validate_name("environment", value.get("environment"))
        )
        self._check_permission(env, requester, app_name, name)
        if action.action_id == "rollback":
            request = rollback_run(
                app=app_name,
                environment=name,
                ref=None,
                requested_by=requester.user_id,
                notify=_notify(requester),
                key=requester.idempotency_key,
                deployment=self.rollback_deployment,
            )
            return await self._start(request, requester, force=False)
        hosts = value.get("hosts")
        if hosts is not None:
            if not isinstance(hosts, list):
                raise Refusal("This button's data is not valid.")
            hosts = [validate_name("host", h) for h in hosts]
        task = validate_name("task", value.get("task") or "deploy")
        self._check_hosts(hosts, env, app_name, name)
        self._check_task(task, app, app_name)
        ref = validate_ref(value["ref"]) if value.get("ref") else app.default_ref
        request = deploy_run(
            app=app_name,
            environment=name,
            ref=ref,
            requested_by=requester.user_id,
            force=True,
            hosts=hosts,
            task=task,
            notify=_notify(requester),
            key=requester.idempotency_key,
            deployment=self.deploy_deployment,
        )
        return await self._start(request, requester, force=True)

    # ---- shared checks
    async def _in_time(
        self, requester: Requester, work: Coroutine[Any, Any, Reply], waiting: str
    ) -> Reply:
        """``work``'s reply if it comes within the budget, else ``waiting`` now and it later."""

        async def later(reply: Reply) -> None:
            await self.responder.send(requester.response_url, reply)

        reply = await self.background.within(work, self.budget, then=later)
        if reply is not None:
            return reply
        return Reply(f"{waiting} {SLOW_NOTE}")

    def _app(self, name: str | None) -> App:
        snapshot = self.catalog.snapshot
        if not snapshot.loaded:
            raise Refusal(
                "The configuration has not been loaded from Prefect yet; try again in "
                "a few seconds."
            )
        app = snapshot.app(name or "")
        if app is None:
            known = ", ".join(f"`{n}`" for n in sorted(snapshot.apps)) or "none yet"
            raise Refusal(f"I don't know an app called `{name}`. Apps: {known}.")
        return app

    def _environment(self, app_name: str, app: App, name: str | None) -> tuple[str, Environment]:
        """The environment named (or the app's default); never a guess at production."""
        known = ", ".join(f"`{n}`" for n in app.environments) or "none"
        chosen = name or app.default_environment
        if chosen is None:
            raise Refusal(
                f"Which environment? *{app_name}* deploys to {known}, e.g. "
                f"`{app_name} to {app.environments[0] if app.environments else 'ENV'}`."
            )
        if chosen not in app.environments:
            raise Refusal(f"*{app_name}* has no environment `{chosen}`. It has: {known}.")
        env = self.catalog.snapshot.environment(app_name, chosen)
        if env is None:
            raise Refusal(
                f"*{app_name}* lists `{chosen}`, but its settings (block "
                f"`{app_name}-{chosen}`) are missing. Ask whoever runs chatops."
            )
        return chosen, env

    def _check_hosts(
        self, hosts: list[str] | None, env: Environment, app: str, environment: str
    ) -> None:
        strangers = [h for h in hosts or [] if h not in env.hosts]
        if strangers:
            raise Refusal(
                f"*{app}* {environment} has no host "
                f"{escape_mrkdwn(', '.join(strangers))}. Its hosts: "
                f"{escape_mrkdwn(', '.join(env.hosts))}."
            )

    def _check_task(self, task: str, app: App, app_name: str) -> None:
        if task != "deploy" and task not in app.tasks:
            known = ", ".join(f"`deploy:{t}`" for t in app.tasks) or "none"
            raise Refusal(f"*{app_name}* has no task `{task}`. Its tasks: {known}.")

    def _check_permission(
        self, env: Environment, requester: Requester, app: str, environment: str
    ) -> None:
        problem = _permission_problem(env, requester, app, environment)
        if problem:
            raise Refusal(problem)


# --------------------------------------------------------------------------- text
def _notify(requester: Requester) -> dict[str, Any]:
    # chat.update only accepts channel ids, so the flow gets the id, never a #name.
    return {"channel": requester.channel_id, "thread_ts": None}


def _permission_problem(
    env: Environment, requester: Requester, app: str, environment: str
) -> str | None:
    """Why this user in this channel may not deploy ``app`` to ``environment``, or None."""
    if env.allowed_users and requester.user_id not in env.allowed_users:
        who = ", ".join(f"<@{u}>" for u in env.allowed_users)
        return f":no_entry: You may not deploy *{app}* to *{environment}*. Allowed: {who}."
    if env.allowed_channels and requester.channel_id not in env.allowed_channels:
        where = ", ".join(f"<#{c}>" for c in env.allowed_channels)
        return f":no_entry: Deploys of *{app}* to *{environment}* are only done from {where}."
    return None


def _permission_summary(env: Environment) -> str:
    parts = []
    if env.allowed_users:
        parts.append("by " + ", ".join(f"<@{u}>" for u in env.allowed_users))
    if env.allowed_channels:
        parts.append("from " + ", ".join(f"<#{c}>" for c in env.allowed_channels))
    return f" — deploys only {' '.join(parts)}" if parts else ""


def _describe_lock(lock: Lock) -> str:
    reason = f": {escape_mrkdwn(lock.message)}" if lock.message else ""
    since = f" since {lock.since}" if lock.at else ""
    by = f"<@{lock.by}>" if SLACK_ID.fullmatch(lock.by) else escape_mrkdwn(lock.by)
    return f"*{lock.environment}* on *{lock.app}* is locked by {by}{since}{reason}."


def _button_value(value: str | None) -> dict[str, Any]:
    try:
        data = json.loads(value or "")
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise Refusal("This button's data is not valid.")
    return data


def _markdown_line(line: str) -> str:
    """One line of a history artifact (Markdown) as Slack mrkdwn."""
    return escape_mrkdwn(line.removeprefix("- ")).replace("**", "*")


def _deployed_text(deployed: history.Deployed, detailed: bool) -> str:
    lines = [line for line in deployed.markdown.splitlines() if line.strip()]
    if not lines:
        return f"• {escape_mrkdwn(deployed.key)}"
    shown = lines if detailed else lines[:1] + [line for line in lines if "deployed by" in line]
    return "• " + "\n    ".join(_markdown_line(line) for line in shown)


def _run_text(run: dict[str, Any]) -> str:
    name = escape_mrkdwn(str(run["name"]))
    link = f"<{run['url']}|{name}>" if run.get("url") else name
    when = run["when"].strftime("%Y-%m-%d %H:%M UTC") if run.get("when") else ""
    by = (
        f" by <@{run['by']}>"
        if run.get("by") and SLACK_ID.fullmatch(str(run["by"]))
        else (f" by {escape_mrkdwn(str(run['by']))}" if run.get("by") else "")
    )
    return f"• {link}: {escape_mrkdwn(str(run['state']))}{by} {when}".rstrip()
