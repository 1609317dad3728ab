"""The HTTP gateway: where Slack, GitHub and the ``chatops`` CLI knock.

Routes::

    POST /slack/commands        the /deploy slash command      → chatops.slack.form
    POST /slack/interactions    button clicks (roll back, ...,  → chatops.slack.form
                                Deploy/Cancel of a question)      and chatops.confirm
    POST /github/webhook        deployment / push / ping events → chatops.github.events,
                                pull request comments (``.deploy``) → chatops.github.pull_requests
                                status / check_suite / check_run → chatops.github.green
    POST /cli/commands          a terminal line (bearer token)  → chatops.grammar
    GET  /cli/whoami            the CLI user a token belongs to
    GET  /cli/requests/{key}    what became of a CLI request (by its idempotency key)
    GET  /cli/runs/{id}         a run's state, its task runs, and who holds the slot it
                                waits for (``waiting``), for ``chatops`` to follow; with
                                ``?since=<cursor>`` only the task runs that ended since then
    POST /prefect/silent-runs   Prefect's automation: a run went silent → chatops.dead_runs
    GET  /healthz               200 while the process is up

A request's path: the gate (below) → a :class:`~chatops.request.Request` → an answer from
:class:`~chatops.answers.Answers`, which resolves deploys and rollbacks into runs
(:func:`chatops.request.resolve`) and stores them in the durable intake
(:mod:`chatops.intake`); its dispatcher creates the Prefect flow runs that the runner executes.

Every POST goes through the same gate, in this order: read the raw body (more than 1 MiB →
413, counted while reading, whatever Content-Length claims), check its signature or token
(missing, wrong or, for Slack, older than 5 minutes → 401; an unset secret refuses everything),
and only then parse it (malformed → 400). Nothing is stored or started for a request that failed
any of these. Nothing slow happens before the answer: the configuration and the locks come from
memory (:mod:`chatops.catalog`), storing a request takes well under a millisecond, and a Slack
answer waits at most ``slack_budget`` for its run to be created.

A CLI request acts as the user its personal token belongs to (:mod:`chatops.users`), whatever
its body says; no, an unknown or a revoked token gets 401, also on the GET endpoints.

Run it with ``python -m chatops.gateway`` (or ``chatops gateway``); it listens on
``CHATOPS_GATEWAY_HOST`` (default 127.0.0.1) and ``CHATOPS_GATEWAY_PORT`` (8000), and reads
``CHATOPS_SLACK_SIGNING_SECRET`` and ``CHATOPS_GITHUB_WEBHOOK_SECRET`` once at start-up, and the
CLI users (``$CHATOPS_HOME/users.json``) whenever they change. Prefect's automation sends the
secret ``$CHATOPS_HOME/secrets/dead-run-webhook`` (read at start-up) in ``X-Chatops-Secret``.
"""

import asyncio
import contextlib
import hmac
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import uvicorn
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterIdempotencyKey,
    TaskRunFilter,
    TaskRunFilterEndTime,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import TaskRunSort
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect.utilities.urls import url_for
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters import prefect_tls, task_ledger
from adapters.home import home
from blocks import GitHubAccess
from chatops.answers import Answers, Reply
from chatops.background import Background
from chatops.catalog import Catalog, prefect_loader
from chatops.github import green, pull_requests
from chatops.github.events import (
    BadDelivery,
    Delivery,
    Ignored,
    NotReady,
    UnknownTask,
    read_delivery,
    requests_for,
)
from chatops.grammar import CommandError, parse
from chatops.intake import CLIENT_SETTINGS, Creator, Intake, PrefectCreator, ReplyTo
from chatops.locks import Locks
from chatops.notify import PeopleNotifier, configured_block
from chatops.request import Refused, Request, Requester, resolve
from chatops.settings import (
    DEPLOYMENTS,
    SILENT_RUNS_HEADER,
    SILENT_RUNS_PATH,
    GatewaySettings,
)
from chatops.signatures import GITHUB_SIGNATURE_HEADER, SignatureError, verify_github, verify_slack
from chatops.slack import form as slack_form
from chatops.slack.respond import WebhookResponder
from chatops.users import UserStore
from model.errors import ChatopsError
from model.summary import CHANGE_LABEL, WAITING_LABEL
from render.slack_card import escape_mrkdwn
from render.text import mrkdwn_to_text

MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0
CLI_WAIT_SECONDS = 30.0
PREFECT_READ_SECONDS = 10.0
"""How long a CLI poll waits for Prefect before answering 503 (the CLI asks again)."""
TASK_RUN_PAGE = 200
SINCE_LAG_SECONDS = 1.0
"""A follow's look with a cursor reaches this far before it: Prefect records task run states from
events, so one that ended a little earlier than the last one seen may show up a little later."""
FINISHED = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
SLOW_NOTE = "(Prefect is slow to answer; I'll post the result here.)"
SETTLE_SECONDS = 60.0
"""How long settling a silent run may take (it talks to Prefect, GitHub and Slack)."""
OUTCOME = "outcome: "
"""How the settling process's answer line starts (anything else on its output is ignored)."""
SETTLED = {"unknown": 404, "finished": 200, "alive": 200, "reported": 200, "reported already": 200}
"""The HTTP status of each outcome of :func:`chatops.dead_runs.settle`."""

logger = logging.getLogger("chatops.gateway")


class BodyTooLarge(ChatopsError):
    """The request body is over :data:`MAX_BODY_BYTES`."""


async def read_body(request: HttpRequest, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def slack_json(reply: Reply) -> dict[str, Any]:
    """A reply as Slack expects it in a slash-command response."""
    answer: dict[str, Any] = {
        "response_type": "in_channel" if reply.public else "ephemeral",
        "text": reply.text,
    }
    if reply.blocks:
        answer["blocks"] = reply.blocks
    return answer


def cli_json(reply: Reply) -> dict[str, object]:
    ticket = asdict(reply.ticket) if reply.ticket else None
    answer = {"text": reply.text, "public": reply.public, "ok": reply.ok, "ticket": ticket}
    return {**answer, "confirm": True} if reply.confirm else answer


def create_app(
    settings: GatewaySettings | None = None,
    *,
    creator: Creator | type[Creator] | None = None,
    responder: WebhookResponder | None = None,
    intake_path: Path | None = None,
    users_path: Path | None = None,
) -> Starlette:
    """The ASGI app. ``creator`` (or a class of them, made with the Prefect client) and
    ``responder`` replace the real ones (tests, tools); ``intake_path`` and ``users_path``
    default to ``$CHATOPS_HOME``'s."""
    settings = settings or GatewaySettings.from_env()
    for name, secret in (
        ("CHATOPS_SLACK_SIGNING_SECRET", settings.slack_signing_secret),
        ("CHATOPS_GITHUB_WEBHOOK_SECRET", settings.github_webhook_secret),
        ("$CHATOPS_HOME/secrets/dead-run-webhook", settings.silent_runs_secret),
    ):
        if not secret.strip():
            logger.warning("%s is not set: its endpoint answers 401 to every request", name)
    users = UserStore(users_path or home().users)
    if not users.known():
        logger.warning(
            "No CLI users in %s: the CLI endpoints answer 401 until `chatops users add NAME`",
            users.path,
        )
    responder = responder or WebhookResponder()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with get_client(httpx_settings=CLIENT_SETTINGS) as client:
            catalog = Catalog(
                prefect_loader(client),
                settings.catalog_refresh_seconds,
                reread_seconds=settings.catalog_reread_seconds,
            )
            if not await catalog.refresh():
                logger.warning("Starting without configuration; retrying in the background")
            catalog.start()
            runs = creator(client) if isinstance(creator, type) else creator
            intake = Intake(
                intake_path or home().intake,
                runs or PrefectCreator(client),
                PeopleNotifier(responder),
                keep_seconds=settings.intake_keep_days * 86400,
            )
            intake.start()
            background = Background()
            app.state.catalog, app.state.intake, app.state.background = catalog, intake, background
            app.state.runs = RunReader(client)
            app.state.settler = settler = Settler()
            app.state.answers = Answers(catalog, Locks(client, catalog), intake, client)
            app.state.comments = pull_requests.Remembered()
            try:
                yield
            finally:
                await catalog.stop()
                await background.drain(SHUTDOWN_GRACE_SECONDS)
                await intake.stop()
                await settler.stop()

    async def healthz(request: HttpRequest) -> Response:
        state = request.app.state
        counts = await asyncio.to_thread(state.intake.store.counts)
        return JSONResponse(
            {"ok": True, "configuration_loaded": state.catalog.snapshot.loaded, "requests": counts}
        )

    async def slack_command(request: HttpRequest) -> Response:
        form = await verified_slack_form(request, settings.slack_signing_secret)
        if form.get("ssl_check"):  # Slack checking our certificate: nothing to do
            return Response(status_code=200)
        read = slack_form.slash_command(form)
        if isinstance(read, slack_form.Unparsed):
            text = f"{escape_mrkdwn(read.error)}\nType `/deploy help` for examples."
            return JSONResponse(slack_json(Reply(text)))
        chat, reply_to = read
        state = request.app.state

        async def later(reply: Reply) -> None:
            url = reply_to.response_url or ""
            await responder.send(url, reply.text, reply.public, blocks=reply.blocks)

        work = state.answers.answer(chat, reply_to, settings.slack_budget)
        reply = await state.background.within(work, settings.query_budget, then=later)
        return JSONResponse(slack_json(reply or Reply(f"Working on it… {SLOW_NOTE}")))

    async def slack_interaction(request: HttpRequest) -> Response:
        form = await verified_slack_form(request, settings.slack_signing_secret)
        read = slack_form.block_action(form)
        state = request.app.state
        if isinstance(read, slack_form.Unparsed):
            url = read.reply_to.response_url or ""
            state.background.spawn(responder.send(url, escape_mrkdwn(read.error)), "slack-bad")
        elif isinstance(read, slack_form.Confirmation):
            click = read

            async def answer_question() -> None:
                reply = await state.answers.confirmation(click, settings.slack_budget)
                url = click.reply_to.response_url or ""
                await responder.send(url, reply.text, reply.public, replace_original=reply.replace)

            state.background.spawn(answer_question(), "slack-confirmation")
        elif read is not None:
            chat, reply_to = read

            async def click() -> None:
                reply = await state.answers.answer(chat, reply_to, settings.slack_budget)
                await responder.send(reply_to.response_url or "", reply.text, reply.public)

            state.background.spawn(click(), f"slack-{chat.command.action}")
        return Response(status_code=200)

    async def github_webhook(request: HttpRequest) -> Response:
        body = await read_body(request)
        verify_github(
            body, request.headers.get(GITHUB_SIGNATURE_HEADER), settings.github_webhook_secret
        )
        delivery = read_delivery(request.headers, body)
        status, answer = await github_answer(request.app.state, delivery)
        logger.info(
            "GitHub %s delivery %s: %s %s",
            delivery.event,
            delivery.delivery_id,
            status,
            json.dumps(answer)[:500],
        )
        return JSONResponse(answer, status_code=status)

    async def cli_command(request: HttpRequest) -> Response:
        user = cli_user(request, users)
        try:
            data = json.loads(await read_body(request))
            text = data["text"]  # a "user" in the body is ignored: the token says who asks
            if not isinstance(text, str):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            return JSONResponse({"error": "expected JSON with text"}, status_code=400)
        try:
            command = parse(text)
        except CommandError as exc:
            return JSONResponse({"text": str(exc), "refused": True}, status_code=422)
        key = data.get("key") if isinstance(data.get("key"), str) else None
        chat = Request(
            Requester("cli", user),
            command,
            key=key and f"cli-{key[:64]}",
            confirmed=data.get("yes") is True,  # --yes, or y to the question
            can_ask=data.get("ask") is True,  # a terminal that can ask y/N
        )
        wait = min(float(data.get("wait") or CLI_WAIT_SECONDS), CLI_WAIT_SECONDS)
        reply = await request.app.state.answers.answer(chat, ReplyTo(), wait)
        return JSONResponse(cli_json(reply))

    async def cli_whoami(request: HttpRequest) -> Response:
        return JSONResponse({"user": cli_user(request, users)})

    async def cli_request(request: HttpRequest) -> Response:
        cli_user(request, users)
        key = request.path_params["key"]
        if not key.startswith("cli-"):
            return JSONResponse({"error": "not a CLI request"}, status_code=404)
        try:
            return JSONResponse(asdict(await request.app.state.intake.ticket(key)))
        except KeyError:  # accepted by another gateway: Prefect knows the run once it exists
            pass
        try:
            started = await request.app.state.runs.by_key(key)
        except Exception as exc:  # noqa: BLE001 - any failure of Prefect: the CLI asks again
            return prefect_unavailable(exc)
        if started is None:
            return JSONResponse({"error": "no such request (yet)"}, status_code=404)
        return JSONResponse({"key": key, "state": "started", **started})

    async def cli_run(request: HttpRequest) -> Response:
        cli_user(request, users)
        try:
            run_id = UUID(request.path_params["run_id"])
        except ValueError:
            return JSONResponse({"error": "not a run id"}, status_code=404)
        try:
            since = cursor_time(request.query_params.get("since"))
        except ValueError:
            return JSONResponse({"error": "since: not a cursor this gateway gave"}, status_code=400)
        try:
            run = await request.app.state.runs.run(run_id, since)
        except ObjectNotFound:
            return JSONResponse({"error": "no such run of chatops"}, status_code=404)
        except Exception as exc:  # noqa: BLE001 - any failure of Prefect: the CLI asks again
            return prefect_unavailable(exc)
        return JSONResponse(run)

    async def silent_run(request: HttpRequest) -> Response:
        body = await read_body(request)
        check_secret(request.headers.get(SILENT_RUNS_HEADER), settings.silent_runs_secret)
        try:
            run_id = run_id_from(json.loads(body))
        except (ValueError, RecursionError):
            run_id = None
        if run_id is None:
            return JSONResponse({"error": 'expected JSON {"flow_run": ID}'}, status_code=400)
        outcome = await request.app.state.settler.settle(run_id)
        logger.info("Prefect found run %s silent: %s", run_id, outcome)
        return JSONResponse(
            {"run": str(run_id), "outcome": outcome}, status_code=SETTLED.get(outcome, 502)
        )

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/slack/commands", slack_command, methods=["POST"]),
            Route("/slack/interactions", slack_interaction, methods=["POST"]),
            Route("/github/webhook", github_webhook, methods=["POST"]),
            Route("/cli/commands", cli_command, methods=["POST"]),
            Route("/cli/whoami", cli_whoami, methods=["GET"]),
            Route("/cli/requests/{key}", cli_request, methods=["GET"]),
            Route("/cli/runs/{run_id}", cli_run, methods=["GET"]),
            Route(SILENT_RUNS_PATH, silent_run, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers=error_answers(),
    )
    return app


async def github_answer(state: State, delivery: Delivery) -> tuple[int, dict[str, object]]:
    """Store the deploys a delivery asks for; the HTTP status and body GitHub will show."""
    if delivery.event == "ping":  # sent when the webhook is created
        return 200, {"pong": True}
    if delivery.event == "issue_comment":
        return await comment_answer(state, delivery)
    try:
        if delivery.event in green.EVENTS:
            return await green_answer(state, delivery)
        wanted = requests_for(delivery, state.catalog.snapshot)
    except Ignored as exc:
        return 200, {"ignored": str(exc)}
    except CommandError as exc:
        return 422, {"error": str(exc)}
    except NotReady as exc:
        return 503, {"error": str(exc)}
    except UnknownTask as exc:
        await refuse_on_github(
            state, f"unknown-task-{exc.reply_to.deployment_id}", exc.reply_to, "error", str(exc)
        )
        return 422, {"error": str(exc)}
    queued, refusals = await store(state, wanted)
    refused = []
    for chat, reply_to, reason in refusals:
        refused.append(
            {"app": chat.command.app, "environment": chat.command.environment, "refused": reason}
        )
        await refuse_on_github(state, f"refused-{chat.key}", reply_to, "failure", reason)
    if queued:
        return 202, {"queued": queued, "refused": refused}
    return 409, {"refused": refused}


async def comment_answer(state: State, delivery: Delivery) -> tuple[int, dict[str, object]]:
    """A comment on a pull request: 202 when it asks us something (answered on the pull
    request, in the background), 200 when it is not for us or was answered already."""
    try:
        asked = pull_requests.read_comment(delivery)
    except Ignored as exc:
        return 200, {"ignored": str(exc)}
    if not state.catalog.snapshot.loaded:
        return 503, {"error": "the configuration has not been loaded from Prefect yet"}
    if not state.comments.first_time(asked.comment_id):
        return 200, {"ignored": f"comment {asked.comment_id} was answered already"}
    work = pull_requests.answer(asked, state.answers, lambda: state.catalog.snapshot)
    state.background.spawn(work, f"github-comment-{asked.comment_id}")
    return 202, {"answering": asked.text, "comment": asked.comment_id}


async def green_answer(state: State, delivery: Delivery) -> tuple[int, dict[str, object]]:
    """Deploy on green (:mod:`chatops.github.green`): store the deploys of branch heads whose
    required checks are all green, and the Slack lines of red ones; 202 when a deploy was
    stored (or found stored already), else 200 with what each environment waits for. What it
    cannot read, :func:`github_answer` answers as for any delivery."""
    snapshot = state.catalog.snapshot
    found = await green.find(delivery, snapshot, await configured_block(GitHubAccess))
    for key, channel, text in found.red:
        await state.intake.submit_slack_message(key, channel, text)
    queued, refusals = await store(state, found.deploys)
    notes = [*found.notes, *(reason for _, _, reason in refusals)]
    return (202 if queued else 200), {"queued": queued, "notes": notes}


async def store(
    state: State, wanted: list[tuple[Request, ReplyTo]]
) -> tuple[list[dict[str, object]], list[tuple[Request, ReplyTo, str]]]:
    """Resolve and store each request a GitHub delivery asks for: what was queued (title,
    request id, state) and what was refused, with the reason in plain words."""
    queued: list[dict[str, object]] = []
    refused: list[tuple[Request, ReplyTo, str]] = []
    for chat, reply_to in wanted:
        try:
            run = resolve(chat, state.catalog.snapshot)
        except Refused as exc:
            refused.append((chat, reply_to, mrkdwn_to_text(str(exc))))
            continue
        ticket = await state.intake.submit(run, reply_to)
        queued.append({"title": ticket.title, "request": ticket.id, "state": ticket.state})
    return queued, refused


async def refuse_on_github(
    state: State, key: str, reply_to: ReplyTo, outcome: str, reason: str
) -> None:
    """Give the GitHub deployment (if the request has one) a final status saying why not."""
    if reply_to.deployment_id and reply_to.repository:
        await state.intake.submit_github_status(
            key,
            {
                "repository": reply_to.repository,
                "deployment_id": reply_to.deployment_id,
                "state": outcome,
                "description": reason.splitlines()[0],
                "log_url": None,
                "environment_url": None,
            },
        )


def cli_user(request: HttpRequest, users: UserStore) -> str:
    """The CLI user whose bearer token the request carries; 401 for no, unknown or revoked."""
    sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    user = users.who(sent)
    if user is None:
        raise SignatureError("missing, unknown or revoked CLI token")
    return user


def run_id_from(payload: Any) -> UUID | None:
    """The flow run a call of the automation names (``{"flow_run": "prefect.flow-run.<id>"}``)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("flow_run"), str):
        return None
    try:
        return UUID(payload["flow_run"].removeprefix("prefect.flow-run."))
    except ValueError:
        return None


class Settler:
    """Settles the runs Prefect found silent in a process of its own, ``python -m
    chatops.dead_runs serve`` (the gateway loads no flow code), one run at a time.

    The process starts at the first call and stays for the next ones (it is started again if it
    died): loading the flow code costs it seconds of CPU, which a gateway that never hears of a
    silent run should not spend at every start, and which a report that comes two heartbeats
    after a death can afford once.
    """

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        if self.process is None or self.process.returncode is not None:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chatops.dead_runs",
                "serve",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )

    async def settle(self, run_id: UUID) -> str:
        """The outcome of :func:`chatops.dead_runs.settle` for the run, or ``failed`` (the run
        is left for the runner's report, or the automation's next call)."""
        async with self.lock:
            await self.start()
            process = self.process
            assert process is not None and process.stdin and process.stdout
            try:
                process.stdin.write(f"{run_id}\n".encode())
                await process.stdin.drain()
                async with asyncio.timeout(SETTLE_SECONDS):
                    while True:
                        line = (await process.stdout.readline()).decode(errors="replace")
                        if not line:
                            raise ConnectionError("the settling process ended")
                        if line.startswith(OUTCOME):
                            return line.removeprefix(OUTCOME).strip()
            except (TimeoutError, ConnectionError, OSError) as exc:
                logger.error("Settling silent run %s failed: %s", run_id, exc or "timed out")
                await self.stop()
                return "failed"
            except asyncio.CancelledError:  # its answer would be read as the next run's
                with contextlib.suppress(OSError):
                    process.kill()
                self.process = None
                raise

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(OSError):
            process.kill()
        await process.wait()


def check_secret(sent: str | None, secret: str) -> None:
    """Refuse (401) a call without the shared secret; an unset secret refuses every call."""
    if not secret.strip() or not hmac.compare_digest((sent or "").encode(), secret.encode()):
        raise SignatureError("missing or wrong secret")


def prefect_unavailable(exc: Exception) -> Response:
    why = str(exc) or type(exc).__name__
    logger.warning("A CLI poll found Prefect unavailable: %s", why)
    return JSONResponse({"error": f"Prefect did not answer ({why[:200]})"}, status_code=503)


class RunReader:
    """What the CLI may read of Prefect through the gateway: the runs of chatops' own
    deployments, their task runs, and which run a CLI request became."""

    def __init__(
        self,
        client: PrefectClient,
        deployments: tuple[str, ...] = DEPLOYMENTS,
        page: int = TASK_RUN_PAGE,
    ) -> None:
        self.client = client
        self.deployments = deployments
        self.page = page
        """How many task runs one read of the Prefect API asks for."""
        self._ours: set[UUID] = set()

    async def by_key(self, key: str) -> dict[str, str] | None:
        """``run_id`` and ``run_url`` of the run created for idempotency key ``key``."""
        async with asyncio.timeout(PREFECT_READ_SECONDS):
            found = await self.client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])
                ),
                limit=1,
            )
        if not found:
            return None
        return {"run_id": str(found[0].id), "run_url": url_for("flow-run", obj_id=found[0].id)}

    async def run(self, run_id: UUID, since: datetime | None = None) -> dict[str, Any]:
        """The run's name and state, and every task run of it, oldest first (:class:`ObjectNotFound`
        for a run that is not one of chatops' deployments); with ``since`` (a ``cursor`` this
        answered before), only those that ended since then (and :data:`SINCE_LAG_SECONDS`
        before), so following a run costs Prefect what changed, not the whole run each time.
        The full answer has the unfinished ones too: a busy server records task runs' ends
        after their run's, and the follow waits for them (:mod:`chatops.cli.follow`). Once the
        run has ended, the answer is ``complete`` when the run wrote its own account of its task
        runs (:mod:`adapters.task_ledger`): then its task runs are that account, in the order
        they ended, whatever the server has recorded yet."""
        async with asyncio.timeout(PREFECT_READ_SECONDS):
            run = await self.client.read_flow_run(run_id)
            if run.deployment_id not in await self._deployment_ids(run.deployment_id):
                raise ObjectNotFound(None, "not a run of chatops")
            # An ended run's own account of its task runs is whole at once; the server's
            # records of the last ones may come seconds later (adapters.task_ledger).
            ended = run.state is not None and run.state.is_final()
            ledger = await task_ledger.read(self.client, run_id) if ended else None
            tasks = [] if ledger is not None else await self._task_runs(run_id, since)
        state = run.state
        ends = [task.end_time for task in tasks if task.end_time is not None]
        cursor = max([*ends, since]) if since else max(ends, default=None)
        return {
            "cursor": cursor.isoformat() if cursor else None,
            "id": str(run.id),
            "name": run.name,
            "url": url_for("flow-run", obj_id=run.id),
            "state": {
                "type": state.type.value if state else None,
                "name": state.name if state else None,
                "message": state.message if state else None,
            },
            "waiting": waiting_for(run),
            "change": run.labels.get(CHANGE_LABEL) or None,
            "complete": ledger is not None,
            "task_runs": ledger
            if ledger is not None
            else [
                {
                    "id": str(task.id),
                    "name": task.name,
                    "state_type": task.state_type.value if task.state_type else None,
                    "total_run_time": task.total_run_time.total_seconds(),
                }
                for task in tasks
            ],
        }

    async def _deployment_ids(self, wanted: UUID | None) -> set[UUID]:
        if wanted is not None and wanted not in self._ours:  # served again under a new id?
            for name in self.deployments:
                with contextlib.suppress(ObjectNotFound):
                    self._ours.add((await self.client.read_deployment_by_name(name)).id)
        return self._ours

    async def _task_runs(self, run_id: UUID, since: datetime | None = None) -> list[Any]:
        """All of them (those that ended since ``since``), page by page: a run with more task
        runs than one page shows them all."""
        ended = states = None
        if since is not None:
            ended = TaskRunFilterEndTime(after_=since - timedelta(seconds=SINCE_LAG_SECONDS))
            states = TaskRunFilterState(type=TaskRunFilterStateType(any_=FINISHED))
        found: list[Any] = []
        while True:
            page = await self.client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                task_run_filter=TaskRunFilter(state=states, end_time=ended),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=self.page,
                offset=len(found),
            )
            found += page
            if len(page) < self.page:
                return found


def cursor_time(cursor: str | None) -> datetime | None:
    """The time in a follow's ``since`` cursor (ValueError for one this gateway did not give)."""
    if not cursor:
        return None
    when = datetime.fromisoformat(cursor)
    if when.tzinfo is None:
        raise ValueError("a cursor has a time zone")
    try:
        when - timedelta(seconds=SINCE_LAG_SECONDS)
    except OverflowError:
        raise ValueError("the cursor's time is too early") from None
    return when


def waiting_for(run: FlowRun) -> dict[str, Any] | None:
    """Who holds the slot ``run`` waits for, as the run recorded it (:mod:`flows.serial`);
    None once it holds the slot, or ended."""
    recorded = run.labels.get(WAITING_LABEL)
    if not recorded or (run.state and run.state.is_final()):
        return None
    try:
        holder = json.loads(str(recorded))
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


async def verified_slack_form(request: HttpRequest, secret: str) -> dict[str, str]:
    body = await read_body(request)
    verify_slack(body, request.headers, secret)
    return slack_form.read_form(body)


def error_answers() -> dict[type[Exception], object]:
    """The gate's refusals as HTTP answers; the reasons never include a secret."""

    async def too_large(request: HttpRequest, exc: Exception) -> Response:
        return JSONResponse({"error": "the body is larger than 1 MiB"}, status_code=413)

    async def unauthenticated(request: HttpRequest, exc: Exception) -> Response:
        logger.warning("Refused %s: %s", request.url.path, exc)
        return JSONResponse({"error": "invalid or missing signature"}, status_code=401)

    async def malformed(request: HttpRequest, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    return {
        BodyTooLarge: too_large,
        SignatureError: unauthenticated,
        slack_form.BadRequest: malformed,
        BadDelivery: malformed,
    }


def main(host: str | None = None, port: int | None = None) -> None:
    """Serve the gateway with uvicorn until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not PREFECT_API_URL.value():
        # Prefect would quietly start a throwaway server with an empty configuration instead.
        raise SystemExit(
            "chatops gateway: set PREFECT_API_URL to the Prefect server's API "
            "(e.g. http://127.0.0.1:4200/api)"
        )
    settings = GatewaySettings.from_env()
    prefect_tls.share()  # a request that reads Prefect makes a client
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
    )


if __name__ == "__main__":
    main()
