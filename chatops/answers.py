"""The answer to every chat command, the same for Slack and for the terminal.

:meth:`Answers.answer` takes a :class:`~chatops.request.Request` and returns a :class:`Reply`
written in Slack's mrkdwn (``*bold*``, `` `code` ``, ``<@U…>``, ``<url|text>``); the Slack
endpoint sends it as is and the CLI renders it for a terminal. One method per action::

    deploy, rollback     resolve the request (chatops.request), store it in the intake, and say
                         "started, follow it here" or "queued, n ahead of you"
    status … verify      the same, for a run that reads every host; answers with what it found
    abort                set the environment's running deploy or rollback Cancelling ("Aborted
                         by …"); the runner stops it and its hosts go back
    lock, unlock, …      change or read the environment locks (Prefect Variables)
    status, latest,      read the deploy history in Prefect
    deploys, where, help

``wait`` is how long an answer may wait for a run to start (Slack: well under its 3 s; the
terminal: longer). Whatever else is slow is bounded by the caller.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling
from prefect.utilities.urls import url_for

from adapters import history
from chatops import confirm
from chatops.catalog import Catalog
from chatops.grammar import HELP_TEXT, Command
from chatops.intake import Intake, ReplyTo, Ticket
from chatops.locks import LockHeld, Locks, LocksUnavailable
from chatops.request import (
    NotConfigured,
    Refused,
    Request,
    Requester,
    check_request,
    find_app,
    find_target,
    not_allowed,
    resolve,
)
from chatops.slack.form import Confirmation
from model.history import EnvironmentRow, PlanCheck, RecentRun
from model.locks import Freeze, Lock
from model.summary import abort_message, run_tags
from model.target import Target
from model.verify import Checked
from render.chat import describe_freeze, describe_lock, holder
from render.page import ago
from render.slack_card import escape_mrkdwn, who

QUERY_RUNS = 5
ABORTABLE = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED, StateType.CANCELLING]
"""States of a deploy or rollback that an abort stops (a Scheduled one never starts; a
Cancelling one is already stopping)."""
ABORTABLE_FLOWS = ["deploy", "rollback"]
VERIFY_SECONDS = 120.0


@dataclass(frozen=True)
class Reply:
    """An answer for whoever asked; ``public`` ones are shown to the whole Slack channel.

    ``ticket`` is the request's run, for a terminal that follows it; ``ok`` is False for a
    refusal (the terminal exits non-zero). ``blocks`` is the Slack Block Kit form of the text
    (a question with buttons); ``confirm`` says the terminal should ask y/N and send the
    request again confirmed; ``replace`` that the Slack message clicked on is replaced.
    """

    text: str
    public: bool = False
    ticket: Ticket | None = None
    ok: bool = True
    blocks: list[dict[str, Any]] | None = None
    confirm: bool = False
    replace: bool = False


class Answers:
    """Answers requests; see the module docstring."""

    def __init__(
        self, catalog: Catalog, locks: Locks, intake: Intake, client: PrefectClient
    ) -> None:
        self.catalog = catalog
        self.locks = locks
        self.intake = intake
        self.client = client
        self._actions: dict[str, Callable[[Request, ReplyTo, float], Awaitable[Reply]]] = {
            "help": self._help,
            "where": self._where,
            "deploy": self._start,
            "rollback": self._start,
            "lock": self._lock,
            "unlock": self._unlock,
            "unlock_all": self._unlock_all,
            "check": self._check,
            "status": self._status,
            "latest": self._latest,
            "deploys": self._deploys,
            "abort": self._abort,
            "noop": self._noop,
            "freeze": self._freeze,
            "unfreeze": self._unfreeze,
        }

    async def answer(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        """The reply to ``request``; refusals become short replies, never exceptions.

        A name the in-memory configuration lacks may have been added a moment ago: the
        configuration is read again (at most once a second) before the request is refused.
        """
        action = self._actions[request.command.action]
        try:
            try:
                return await action(request, reply_to, wait)
            except NotConfigured:
                if not await self.catalog.refresh_now():
                    raise
                return await action(request, reply_to, wait)
        except Refused as exc:
            return Reply(str(exc), ok=False)
        except LocksUnavailable:
            return Reply(
                "The Prefect API did not answer in time, so the locks could not be read or "
                "changed, and nothing was started. Try again.",
                ok=False,
            )

    # ---- runs
    async def _start(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        run = resolve(request, self.catalog.snapshot)
        if asks_first(request, self.catalog.snapshot):
            return await self._ask(request, run.title, wait)
        ticket = await self.intake.submit(run, reply_to)
        ticket = await self.intake.wait(ticket.id, wait)
        return started_reply(request.requester, ticket, request.command)

    async def _ask(self, request: Request, title: str, wait: float) -> Reply:
        """A deploy to a ``confirm`` environment, not confirmed yet: what it would change (a
        dry run) and the question; nothing starts before the requester's yes."""
        requester, command = request.requester, request.command
        again = command_text(command)
        if not request.can_ask:
            return Reply(
                f":raised_hand: Deploys of *{target_name(request, self.catalog)}* are confirmed "
                f"first, and there is no terminal to ask on: run `chatops {again} --yes` (see "
                f"what it would change with `chatops {command_text(command, 'noop')}`). Nothing "
                "was started.",
                ok=False,
            )
        plan = await self._plan(request, wait)
        if requester.via != "slack":
            return Reply(f"{plan}\n*{escape_mrkdwn(title)}* waits for your yes.", confirm=True)
        minutes = confirm.VALID_SECONDS // 60
        text = (
            f"{plan}\n:raised_hand: {requester.mention}, deploy *{escape_mrkdwn(title)}*? "
            f"Only you can answer, within {minutes} minutes."
        )
        value = confirm.ask_value(request)
        return Reply(text, public=True, blocks=confirm.question_blocks(text, value))

    async def _plan(self, request: Request, wait: float) -> str:
        """What the dry run of a deploy request found (its own run, under its own key)."""
        dry = Command(
            "noop",
            request.command.app,
            ref=request.command.ref,
            environment=request.command.environment,
            hosts=request.command.hosts,
        )
        key = f"{request.key}-plan" if request.key else None
        reply = await self._noop(Request(request.requester, dry, key=key), ReplyTo(), wait)
        return reply.text

    async def confirmation(self, click: Confirmation, wait: float) -> Reply:
        """The answer to a click on "Deploy" or "Cancel" under a question (:mod:`chatops.confirm`):
        only the requester's click counts, once."""
        try:
            asked = confirm.read_value(click.value)
        except confirm.Unconfirmable as exc:
            return Reply(str(exc), ok=False)
        requester = asked.requester
        title = command_text(asked.command).removeprefix("deploy ")
        if click.clicker.user != requester.user:
            return Reply(
                f":no_entry: Only {requester.mention} can answer this question; it is their "
                f"deploy. To deploy yourself: `/deploy {title}`.",
                ok=False,
            )
        if click.deploy:
            reply = await self.answer(replace(asked, confirmed=True), click.reply_to, wait)
            return replace(reply, replace=reply.ok)
        why = f"Cancelled by {requester.mention}; nothing was started."
        ticket = await self.intake.withdraw(str(asked.key), title, why)
        if ticket.error != why:  # the key has a run already: Deploy was clicked first
            link = f" ({ticket.run_url})" if ticket.run_url else ""
            return Reply(
                f"Too late to cancel: it was confirmed already{link}. To stop it: "
                f"`abort {asked.command.app} in {asked.command.environment}`.",
                ok=False,
            )
        return Reply(
            f":no_entry_sign: {requester.mention} cancelled the deploy of "
            f"*{escape_mrkdwn(title)}*; nothing was started.",
            public=True,
            replace=True,
        )

    async def _verify(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        ticket, ended = await self._run_to_its_end(request, reply_to, wait)
        if ticket.run_id is None:
            return started_reply(request.requester, ticket, request.command)
        if ended is None:
            return Reply(f"The check did not finish in time; see {ticket.run_url}.", ticket=ticket)
        return Reply(drift_text(history.findings(ended[1])), ticket=ticket)

    async def _noop(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        """A dry run: the checks a deploy makes and what it would change, as one reply."""
        ticket, ended = await self._run_to_its_end(request, reply_to, wait)
        if ticket.run_id is None:
            return started_reply(request.requester, ticket, request.command)
        if ended is None:
            return Reply(
                f"The dry run did not finish in time; see {ticket.run_url}.", ticket=ticket
            )
        flow_run, artifacts = ended
        checks = history.plan(artifacts)
        if not checks:
            why = escape_mrkdwn(flow_run.state.message if flow_run.state else "") or "see the run"
            return Reply(f"The dry run of *{ticket.title}* failed: {why}", ok=False, ticket=ticket)
        return Reply(plan_text(ticket.title, checks), ticket=ticket)

    async def _run_to_its_end(
        self, request: Request, reply_to: ReplyTo, wait: float
    ) -> tuple[Ticket, tuple[FlowRun, list[Any]] | None]:
        """Start the run a read-only request asks for (verify, dry run) and wait for its end:
        its ticket, and the run with its artifacts (None when it did not start or end within
        :data:`VERIFY_SECONDS`)."""
        run = resolve(request, self.catalog.snapshot)
        ticket = await self.intake.submit(run, reply_to)
        ticket = await self.intake.wait(ticket.id, max(wait, VERIFY_SECONDS), behind_others=True)
        if ticket.run_id is None:
            return ticket, None
        deadline = asyncio.get_running_loop().time() + VERIFY_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            try:
                flow_run = await self.client.read_flow_run(ticket.run_id)
            except ObjectNotFound:
                raise Refused(f"The run {ticket.run_id} is gone from Prefect.") from None
            if flow_run.state and flow_run.state.is_final():
                artifacts = await self.client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[ticket.run_id])
                    )
                )
                return ticket, (flow_run, artifacts)
            await asyncio.sleep(0.3)
        return ticket, None

    async def _abort(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        """Cancel the deploy or rollback running in the environment (the oldest, which holds
        its slot). The runner stops its process like a SIGTERM: the batch under way ends,
        every host switched so far goes back, and the run reports who aborted it."""
        requester = request.requester
        target = find_target(request.command, self.catalog.snapshot)
        if refusal := not_allowed(target, requester):
            return Reply(refusal, ok=False)
        where = f"*{target.app_name}* to *{target.environment_name}*"
        runs = await self._abortable(target.app_name, target.environment_name)
        if not runs:
            return Reply(f"Nothing is deploying {where}.")
        run = runs[0]
        link = f"<{url_for('flow-run', obj_id=run.id)}|{escape_mrkdwn(run.name)}>"
        if run.state_type == StateType.CANCELLING:
            why = escape_mrkdwn(run.state.message or "") if run.state else ""
            return Reply(f"{link} is already stopping{f' ({why})' if why else ''}.")
        message = abort_message(requester.user)
        never_started = run.state_type == StateType.SCHEDULED
        state = Cancelled(message=message) if never_started else Cancelling(message=message)
        await self.client.set_flow_run_state(run.id, state, force=True)
        then = (
            "It had not started."
            if never_started
            else "The batch under way ends, then every host it switched goes back to the "
            "release it ran before."
        )
        waiting = f" {len(runs) - 1} more wait for the environment." if len(runs) > 1 else ""
        return Reply(
            f":octagonal_sign: {requester.mention} aborted {link}. {then}{waiting}", public=True
        )

    async def _abortable(self, app: str, environment: str) -> list[FlowRun]:
        """The unfinished deploys and rollbacks of one app environment, oldest first."""
        return await self.client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=ABORTABLE_FLOWS)),
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=run_tags(app, environment)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ABORTABLE)),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )

    # ---- configuration
    async def _help(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        return Reply(f"```{HELP_TEXT}```")

    async def _where(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        snapshot = self.catalog.snapshot
        name, app, _ = find_app(request.command.app, snapshot)
        lines = [f"*{name}* ({escape_mrkdwn(app.repository)}) deploys to:"]
        for env_name in app.environments:
            env = snapshot.environment(name, env_name)
            hosts = ", ".join(env.hosts) if env else "not configured"
            notes = [
                note
                for note, on in (
                    ("default", env_name == app.default_environment),
                    ("production", bool(env and env.production)),
                )
                if on
            ]
            rules = []
            if env and env.allowed_users:
                rules.append("by " + ", ".join(f"<@{u}>" for u in env.allowed_users))
            if env and env.allowed_channels:
                rules.append("from " + ", ".join(f"<#{c}>" for c in env.allowed_channels))
            if env and env.cli_users:
                rules.append("from the terminal by " + ", ".join(env.cli_users))
            lock = snapshot.lock(name, env_name)
            lines.append(
                f"• *{env_name}*{' (' + ', '.join(notes) + ')' if notes else ''}: "
                f"{escape_mrkdwn(hosts)}"
                + (f" — deploys only {' '.join(rules)}" if rules else "")
                + (f" — :lock: locked by {holder(lock)}" if lock else "")
            )
        if not app.environments:
            lines.append("no environments are configured.")
            return Reply("\n".join(lines))
        running = await self._deployed(Command(action="status", app=name), detailed=False)
        return Reply("\n".join([*lines, "What runs there:", running.text]))

    # ---- locks
    async def _lock(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        command, requester = request.command, request.requester
        target = self._lockable(command, requester)
        wanted = Lock(
            target.app_name,
            target.environment_name,
            requester.user,
            command.message,
            datetime.now(UTC).isoformat(),
            requester.via,
        )
        try:
            replaced = await self.locks.take(wanted, command.force)
        except LockHeld as exc:
            return Reply(
                f":lock: {describe_lock(exc.lock)}\nTake it over with "
                f"`lock {target.environment_name} on {target.app_name} steal` (they are told).",
                ok=False,
            )
        reason = f": {escape_mrkdwn(command.message)}" if command.message else ""
        stolen = replaced is not None and replaced.stops(requester.user, requester.via)
        taken = f" (taken over from {holder(replaced)})" if replaced and stolen else ""
        text = (
            f":lock: {requester.mention} locked *{target.environment_name}* on "
            f"*{target.app_name}*{reason}{taken}."
        )
        if replaced and stolen:  # a public reply that mentions them: Slack notifies the holder
            text += f"\n{holder(replaced)}, your lock was taken over by {requester.mention}."
        return Reply(text, public=True)

    async def _unlock(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        command, requester = request.command, request.requester
        target = self._lockable(command, requester)
        where = f"*{target.environment_name}* on *{target.app_name}*"
        try:
            removed = await self.locks.release(
                target.app_name,
                target.environment_name,
                requester.user,
                requester.via,
                command.force,
            )
        except LockHeld as exc:
            return Reply(
                f":lock: {describe_lock(exc.lock)}\nRemove it anyway with "
                f"`unlock {target.environment_name} on {target.app_name}!`.",
                ok=False,
            )
        if removed is None:
            return Reply(f"{where} was not locked.")
        whose = (
            f" (it was {holder(removed)}'s)" if removed.stops(requester.user, requester.via) else ""
        )
        return Reply(f":unlock: {requester.mention} unlocked {where}{whose}.", public=True)

    async def _unlock_all(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        command, requester = request.command, request.requester
        only = find_app(command.app, self.catalog.snapshot)[0] if command.app else None
        removed, kept = [], []
        for lock in await self.locks.all():
            if only not in (None, lock.app):
                continue
            env = self.catalog.snapshot.environment(lock.app, lock.environment)
            allowed = env is None or not env.refusal(
                lock.app, lock.environment, requester.via, requester.user, requester.channel
            )
            mine = not lock.stops(requester.user, requester.via)
            if allowed and (mine or command.force):
                if await self.locks.release(
                    lock.app, lock.environment, requester.user, requester.via, force=True
                ):
                    removed.append(f"*{lock.environment}* on *{lock.app}*")
            else:
                kept.append(describe_lock(lock))
        text = (
            f":unlock: {requester.mention} unlocked {', '.join(removed)}."
            if removed
            else "No locks of yours to remove."
        )
        if kept:
            text += (
                "\nStill locked (not yours, or you may not deploy there; `unlock all!` removes "
                "others' locks):\n• " + "\n• ".join(kept)
            )
        return Reply(text, public=bool(removed))

    async def _check(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        command, requester = request.command, request.requester
        target = find_target(command, self.catalog.snapshot)
        try:
            check_request(target, requester, self.catalog.snapshot)
        except Refused as refusal:
            return Reply(str(refusal), ok=False)
        return Reply(
            f":white_check_mark: You can deploy *{target.app_name}* to "
            f"*{target.environment_name}* now."
        )

    def _lockable(self, command: Command, requester: Requester) -> Target:
        target = find_target(command, self.catalog.snapshot)
        if refusal := not_allowed(target, requester):
            raise Refused(refusal)
        return target

    # ---- freezes
    async def _freeze(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        command, requester = request.command, request.requester
        environment = self._freezable(str(command.environment), requester)
        now = datetime.now(UTC).isoformat()
        await self.locks.freeze(
            Freeze(environment, requester.user, command.message, now, requester.via)
        )
        reason = f": {escape_mrkdwn(command.message)}" if command.message else ""
        return Reply(
            f":snowflake: {requester.mention} froze *{environment}*{reason}. No app deploys "
            f"there until `unfreeze {environment}`; rollbacks still run.",
            public=True,
        )

    async def _unfreeze(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        requester = request.requester
        environment = self._freezable(str(request.command.environment), requester)
        lifted = await self.locks.unfreeze(environment)
        if lifted is None:
            return Reply(f"*{environment}* was not frozen.")
        return Reply(
            f":sunny: {requester.mention} unfroze *{environment}*; deploys go there again.",
            public=True,
        )

    def _freezable(self, environment: str, requester: Requester) -> str:
        """``environment``, if some app has it and ``requester`` may deploy there in every app
        that has it: a freeze stops them all, so only who may deploy to all may freeze (or
        lift the freeze)."""
        snapshot = self.catalog.snapshot
        apps = sorted(
            name for name, app in snapshot.apps.items() if environment in app.environments
        )
        if not apps:
            raise Refused(f"No app has an environment named *{escape_mrkdwn(environment)}*.")
        barred = [
            name
            for name in apps
            if not_allowed(
                find_target(Command("check", name, environment=environment), snapshot), requester
            )
        ]
        if barred:
            raise Refused(
                f":no_entry: You may not deploy to *{environment}* of {', '.join(barred)}, so you "
                "may not freeze or unfreeze it either (a freeze stops every app there)."
            )
        return environment

    # ---- history
    async def _status(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        if request.command.verify:
            return await self._verify(request, reply_to, wait)
        return await self._deployed(request.command, detailed=False)

    async def _latest(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        return await self._deployed(request.command, detailed=True)

    async def _deployed(self, command: Command, detailed: bool) -> Reply:
        """What runs where (the rows of the ``environments`` page), for every app environment
        or those the command names."""
        wanted: set[tuple[str, str]] | None = None
        if command.app is not None:
            name, app, _ = find_app(command.app, self.catalog.snapshot)
            names = app.environments
            if command.environment is not None:
                names = [find_target(command, self.catalog.snapshot).environment_name]
            wanted = {(name, env) for env in names}
        rows = [
            row
            for row in await asyncio.to_thread(history.environment_rows)
            if wanted is None or (row.app, row.environment) in wanted
        ]
        if not any(row.deployed or row.lock or row.freeze for row in rows):
            return Reply("Nothing deployed there yet (as far as Prefect knows).")
        now = datetime.now(UTC)
        return Reply("\n".join(environment_text(row, detailed, now) for row in rows))

    async def _deploys(self, request: Request, reply_to: ReplyTo, wait: float) -> Reply:
        command = request.command
        name, app, carried = find_app(command.app, self.catalog.snapshot)
        environment = None
        if command.environment is not None:
            environment = find_target(command, self.catalog.snapshot).environment_name
        ref = command.ref or carried
        runs = await asyncio.to_thread(history.recent_runs, name, environment)
        runs = [r for r in runs if ref in (None, r.ref)][:QUERY_RUNS]
        if not runs:
            return Reply("No runs found.")
        return Reply("\n".join(run_text(run) for run in runs))


# --------------------------------------------------------------------------- confirmation
def asks_first(request: Request, snapshot: Any) -> bool:
    """Whether ``request`` waits for its requester's yes: a deploy from Slack or the terminal
    to an environment with ``confirm``, not confirmed yet. GitHub events and pull request
    comments are not asked (their review was the confirmation), rollbacks neither."""
    if request.confirmed or request.command.action != "deploy":
        return False
    if request.requester.via not in ("slack", "cli"):
        return False
    return find_target(request.command, snapshot).environment.confirm


def target_name(request: Request, catalog: Catalog) -> str:
    """``shop`` to ``production``, as the configuration names them."""
    target = find_target(request.command, catalog.snapshot)
    return f"{target.app_name}* to *{target.environment_name}"


def command_text(command: Command, verb: str = "deploy") -> str:
    """The request as typed: ``deploy shop@v2 to production/web-1``, ``deploy:migrate …!``."""
    app = f"{command.app}@{command.ref}" if command.ref else str(command.app)
    where = f" to {command.environment}" if command.environment else ""
    hosts = f"/{','.join(command.hosts)}" if command.hosts and where else ""
    if verb == "deploy" and command.task != "deploy":
        verb = f"deploy:{command.task}"
    bang = "!" if command.force and verb.startswith("deploy") else ""
    return f"{verb} {app}{where}{hosts}{bang}"


# --------------------------------------------------------------------------- text
def started_reply(requester: Requester, ticket: Ticket, command: Command) -> Reply:
    """ "Started, follow it" or "queued, n ahead of you", for a request in the intake."""
    title = escape_mrkdwn(ticket.title)
    if ticket.state == "failed":
        return Reply(f"Could not start *{title}*: {escape_mrkdwn(ticket.error or '')}", ok=False)
    if ticket.run_id is None:
        ahead = f", {ticket.ahead} ahead of you" if ticket.ahead else ""
        return Reply(
            f":hourglass: Queued *{title}*{ahead}. It starts as soon as Prefect takes it; "
            "the run link follows here.",
            ticket=ticket,
        )
    link = f"<{ticket.run_url}|{title}>" if ticket.run_url else f"`{title}`"
    doing = {"rollback": "is rolling back", "status": "is checking"}.get(
        command.action, "is deploying"
    )
    hosts = f" (hosts: {escape_mrkdwn(', '.join(command.hosts))})" if command.hosts else ""
    forced = " (forced)" if command.force else ""
    return Reply(
        f"{requester.mention} {doing} *{title}*{hosts}{forced}. Follow it: {link}",
        public=True,
        ticket=ticket,
    )


def environment_text(row: EnvironmentRow, detailed: bool, now: datetime) -> str:
    """One app environment for ``status``/``where`` (``latest``: ``detailed``), the same facts
    as its row on the ``environments`` page."""
    d, lines = row.deployed, []
    if d is None:
        lines.append(f"• *{row.app}* on *{row.environment}*: nothing deployed yet")
    else:
        sha = f"<{d.commit_url}|{d.sha[:12]}>" if d.commit_url else f"`{d.sha[:12]}`"
        lines.append(f"• *{row.app}* on *{row.environment}*: `{escape_mrkdwn(d.ref)}` at {sha}")
        at = row.deployed_at()
        since = f" ({ago(at, now)})" if at else ""
        lines.append(f"    deployed by {who(d.requested_by)} at {d.finished}{since}")
        if detailed:
            lines.append(f"    release `{d.release}` on {escape_mrkdwn(', '.join(d.hosts))}")
            if d.run_url:
                lines.append(f"    run: <{d.run_url}|{escape_mrkdwn(d.run_url)}>")
    if row.freeze is not None:
        lines.append(f"    {describe_freeze(row.freeze)}")
    if row.lock is not None:
        lines.append(f"    :lock: {describe_lock(row.lock)}")
    if row.verified is not None:
        warning = ":warning: " if row.verified.drifted else ""
        lines.append(f"    last verify: {warning}{escape_mrkdwn(row.verified.finding())}")
    return "\n".join(lines)


def run_text(run: RecentRun) -> str:
    name = escape_mrkdwn(run.name)
    link = f"<{run.url}|{name}>" if run.url else name
    when = run.when.strftime("%Y-%m-%d %H:%M UTC") if run.when else ""
    by = f" by {who(run.requested_by)}" if run.requested_by else ""
    return f"• {link}: {escape_mrkdwn(run.state)}{by} {when}".rstrip()


def plan_text(title: str, checks: list[PlanCheck]) -> str:
    """What a dry run found, check by check, and whether a deploy would go ahead."""
    marks = {True: ":white_check_mark:", False: ":x:", None: "•"}
    stops = [c for c in checks if c.ok is False]
    verdict = (
        f"A deploy would stop at: {', '.join(c.what for c in stops)}."
        if stops
        else "A deploy would go ahead."
    )
    lines = [f"*Dry run of {escape_mrkdwn(title)}* (nothing was changed). {verdict}"]
    lines += [f"{marks[c.ok]} {c.what}: {escape_mrkdwn(c.detail)}" for c in checks]
    return "\n".join(lines)


def drift_text(checked: list[Checked]) -> str:
    """What a verify run found, host by host; drift and unreachable hosts first."""
    if not checked:
        return "No hosts were checked."
    bad = [c for c in checked if not c.consistent]
    head = (
        f":warning: {len(bad)} of {len(checked)} hosts differ from the record:"
        if bad
        else f":white_check_mark: All {len(checked)} hosts run what was recorded."
    )
    lines = [head]
    for c in sorted(checked, key=lambda c: (c.consistent, c.app, c.environment, c.host)):
        mark = "•" if c.consistent else ":x:"
        lines.append(f"{mark} *{c.app}* {c.environment} `{escape_mrkdwn(c.host)}`: {c.describe()}")
    return "\n".join(lines)
