"""Durable intake: an accepted request is on disk before its sender hears "accepted", and it
becomes a flow run, with retries, until it does.

The store is a SQLite database owned by the gateway (``$CHATOPS_HOME/intake.db``, WAL mode,
``synchronous=FULL``: a committed request survives a killed process and a power cut). It is
the gateway's own because the engine's database is exactly what fails under a burst: the
Prefect server answers concurrent writes on SQLite with 503 "database is locked", and a
request that waited on that could be lost or answered too late. Here, storing takes well under
a millisecond, and one dispatcher turns stored requests into flow runs, up to
:data:`CREATE_AT_ONCE` at a time, so the Prefect server sees a bounded stream of writes instead
of a burst. Requests for the same environment become runs one after the other, in the order they
came (:func:`lane`): a later one is not created while an earlier one still waits for Prefect::

    ticket = await intake.submit(run, reply)     # durable now; the sender can be answered
    ticket = await intake.wait(ticket.id, 0.6)   # started yet? (run link) or still queued
    ...                                          # the dispatcher (:meth:`Intake.dispatch`)
                                                 # starts it, retrying until Prefect takes it

Duplicates are impossible twice over: a request's idempotency key (Slack trigger id, GitHub
delivery or deployment id, CLI invocation id) is unique in the store, and it is also the
Prefect idempotency key of the run, so a run created just before a crash is found again, not
created twice.

The store stays small: a request that became a run (or can never become one) is kept for
``keep_seconds`` (the gateway's ``CHATOPS_INTAKE_KEEP_DAYS``, default 7 days) so its ticket can
still be read, then deleted, and the file gives the space back. A repeated delivery after that is
still not doubled: Prefect knows the run by the same idempotency key. Queued requests are never
deleted.

Whoever asked is told what became of a request they were not answered about yet: the run link
goes to the Slack ``response_url`` when the answer said "queued"; a GitHub deployment gets a
``queued`` status while Prefect cannot be reached and an ``error`` status if its run can never
start (:class:`Notifier`).
"""

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.utilities.urls import url_for

from chatops.background import Loop
from chatops.request import Run
from model.errors import DeployError

logger = logging.getLogger("chatops.intake")

State = Literal["queued", "started", "failed"]
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
BUSY_RETRY_SECONDS = 0.2
BUSY_RETRY_MAX_SECONDS = 2.0
"""How soon a run Prefect was too busy to take is tried again: 0.2 s, growing 1.5× per attempt
up to 2 s, where Prefect's client would wait 2 s, then 4 s (its own retries are off here). In the
100-request SQLite burst this moved the last run's creation from 231–248 s to 204–209 s after
the burst: the rest is the engine's own pace on SQLite."""
CREATE_AT_ONCE = 8
"""How many runs the dispatcher asks Prefect to create at the same time (different environments;
one environment's requests are created in order, one at a time)."""
QUEUED_LOOKED_AT = 500
"""How many queued requests, oldest first, one round of the dispatcher considers."""
KEEP_SECONDS = 7 * 86400.0
"""How long a finished request stays in the store (its ticket readable) before it is deleted."""
PRUNE_EVERY_SECONDS = 3600.0
SLOW_NOTICE_SECONDS = 20.0
"""After this long without a run, whoever asked is told that the request waits (once)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    reply TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    run_id TEXT,
    run_url TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    error TEXT,
    noticed INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (state, id);
"""


@dataclass(frozen=True)
class ReplyTo:
    """Where to tell what became of a request: a Slack ``response_url``, a GitHub deployment."""

    response_url: str | None = None
    mention: str | None = None
    repository: str | None = None
    deployment_id: int | None = None


@dataclass(frozen=True)
class Started:
    """A flow run that exists (it may still wait for a runner)."""

    id: str
    url: str | None


@dataclass(frozen=True)
class Ticket:
    """What the intake knows about one request."""

    id: int
    key: str
    title: str
    state: State
    run_id: str | None
    run_url: str | None
    ahead: int
    error: str | None


@dataclass(frozen=True)
class Job:
    """One stored request: a run to start, a GitHub status or a Slack line to post."""

    id: int
    key: str
    kind: Literal["run", "github_status", "slack_message"]
    payload: dict[str, Any]
    reply: ReplyTo
    attempts: int
    noticed: bool
    created: float

    @property
    def run(self) -> Run:
        return Run(**self.payload)


class Permanent(DeployError):
    """A request that can never be carried out (Prefect refused its parameters)."""


class Busy(DeployError):
    """Prefect could not take the run just now (503 "database is locked", 429, 502)."""


class Creator(Protocol):
    """Creates the flow run of a :class:`Run` (the real one talks to Prefect)."""

    async def create(self, run: Run) -> Started: ...


class Notifier(Protocol):
    """Tells people what became of requests they were not answered about."""

    async def started(self, job: Job, started: Started) -> None: ...

    async def waiting(self, job: Job, why: str) -> None: ...

    async def failed(self, job: Job, why: str) -> None: ...

    async def post_github_status(self, payload: dict[str, Any]) -> None: ...

    async def post_slack_message(self, payload: dict[str, Any]) -> None: ...


_JOB_COLUMNS = "id, key, kind, payload, reply, attempts, noticed, created"


def _job(row: tuple[Any, ...]) -> Job:
    """A :class:`Job` from a row that starts with :data:`_JOB_COLUMNS`."""
    return Job(
        *row[:3], json.loads(row[3]), ReplyTo(**json.loads(row[4])), row[5], bool(row[6]), row[7]
    )


class Store:
    """The SQLite file. Every call is short; callers run them in a thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # Freed pages go back to the file system on prune; a store made before this setting
            # is rewritten once (VACUUM) to take it.
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("VACUUM")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(
        self,
        key: str,
        kind: str,
        payload: dict[str, Any],
        reply: ReplyTo,
        state: State = "queued",
        error: str | None = None,
    ) -> int:
        """Store a job (once per key, committed before returning); return its id. A job stored
        ``failed`` is never started: its key is spent (see :meth:`Intake.withdraw`)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO jobs "
                    "(key, kind, payload, reply, state, error, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        kind,
                        json.dumps(payload),
                        json.dumps(reply.__dict__),
                        state,
                        error,
                        now,
                        now,
                    ),
                )
                row = self._db.execute("SELECT id FROM jobs WHERE key = ?", (key,)).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(row[0])

    def ticket(self, job_id: int | str) -> Ticket:
        """The ticket of a job, by its id or its key."""
        column = "key" if isinstance(job_id, str) else "id"
        with self._lock:
            row = self._db.execute(
                "SELECT id, key, payload, state, run_id, run_url, error FROM jobs "
                f"WHERE {column} = ?",
                (job_id,),
            ).fetchone()
            if row is None:
                raise KeyError(job_id)
            job_id = row[0]
            ahead = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND id < ?", (job_id,)
            ).fetchone()[0]
        title = json.loads(row[2]).get("title", "")
        return Ticket(row[0], row[1], title, row[3], row[4], row[5], int(ahead), row[6])

    def queued(self, limit: int = QUEUED_LOOKED_AT) -> list[tuple[Job, float]]:
        """Queued jobs with the time of their next try, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS}, next_try FROM jobs WHERE state = 'queued' "
                "ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [(_job(row), row[-1]) for row in rows]

    def jobs(self) -> list[Job]:
        """Every job kept, oldest first."""
        return self._jobs("ORDER BY id", ())

    def _jobs(self, where: str, values: tuple[Any, ...]) -> list[Job]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs {where}", values).fetchall()
        return [_job(row) for row in rows]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_try) FROM jobs WHERE state = 'queued'"
            ).fetchone()
        return row[0]

    def update(self, job_id: int, **fields: Any) -> None:
        fields["updated"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))

    def prune(self, before: float) -> int:
        """Delete finished jobs last changed before ``before`` (Unix time); return how many."""
        with self._lock:
            deleted = self._db.execute(
                "DELETE FROM jobs WHERE state != 'queued' AND updated < ?", (before,)
            ).rowcount
            if deleted:
                # executescript runs the pragma to its end; execute() frees a single page.
                self._db.executescript("PRAGMA incremental_vacuum;")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: count for state, count in rows}


class Intake:
    """Stores requests and turns them into runs; see the module docstring."""

    def __init__(
        self, path: Path, creator: Creator, notifier: Notifier, keep_seconds: float = KEEP_SECONDS
    ) -> None:
        self.store = Store(path)
        self.creator = creator
        self.notifier = notifier
        self.keep_seconds = keep_seconds
        self._pruned = 0.0
        self._wake = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[Ticket]] = {}
        self._loop = Loop(self.dispatch, "intake-dispatch")

    async def submit(self, run: Run, reply: ReplyTo) -> Ticket:
        """Store ``run`` durably (its key makes a repeat a no-op); return its ticket."""
        key = run.key or f"anon-{uuid.uuid4()}"
        payload = {
            "deployment": run.deployment,
            "parameters": run.parameters,
            "title": run.title,
            "key": key,
        }
        job_id = await asyncio.to_thread(self.store.add, key, "run", payload, reply)
        self._wake.set()
        return await asyncio.to_thread(self.store.ticket, job_id)

    async def withdraw(self, key: str, title: str, why: str) -> Ticket:
        """Spend ``key`` without a run (a deploy its requester cancelled): a later request with
        the same key gets this ticket (``failed``, ``why``), never a run. If ``key`` was
        submitted already, its ticket is returned unchanged."""
        payload = {"title": title, "key": key}
        job_id = await asyncio.to_thread(
            self.store.add, key, "run", payload, ReplyTo(), "failed", why
        )
        return await asyncio.to_thread(self.store.ticket, job_id)

    async def submit_github_status(self, key: str, payload: dict[str, Any]) -> None:
        """Store a GitHub deployment status to post (e.g. why a deployment will not start)."""
        await asyncio.to_thread(self.store.add, key, "github_status", payload, ReplyTo())
        self._wake.set()

    async def submit_slack_message(self, key: str, channel: str, text: str) -> None:
        """Store a line to post to a Slack channel, once per ``key`` (e.g. a red commit)."""
        payload = {"channel": channel, "text": text}
        await asyncio.to_thread(self.store.add, key, "slack_message", payload, ReplyTo())
        self._wake.set()

    async def ticket(self, job_id: int | str) -> Ticket:
        """A job's ticket by its id or its idempotency key (KeyError if there is none)."""
        return await asyncio.to_thread(self.store.ticket, job_id)

    async def wait(self, job_id: int, seconds: float, *, behind_others: bool = False) -> Ticket:
        """The ticket once its run has started (or failed), or after ``seconds``; at once when
        other requests are queued ahead of it, unless ``behind_others`` (the answer then says
        how many are ahead, and the link follows).

        If the run starts while someone waits here, the waiter tells the requester, so the
        dispatcher does not notify again; if it starts later, the dispatcher does.
        """
        ticket = await self.ticket(job_id)
        if ticket.state != "queued" or (ticket.ahead > 0 and not behind_others):
            return ticket
        waiter = self._waiters.setdefault(job_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), seconds)
        except TimeoutError:
            return await self.ticket(job_id)
        finally:
            if self._waiters.get(job_id) is waiter:
                del self._waiters[job_id]

    def start(self) -> None:
        """Dispatch in the background until :meth:`stop`."""
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        self.store.close()

    async def dispatch(self) -> None:
        """Turn due jobs into runs (or statuses) for as long as the gateway runs: up to
        :data:`CREATE_AT_ONCE` at a time, each environment's in order. Each round attempts the
        oldest queued job of every lane that is due (:func:`next_in_lanes`), so a request for
        one environment never waits behind a long queue for another."""
        pool = asyncio.Semaphore(CREATE_AT_ONCE)

        async def attempt(job: Job) -> None:
            async with pool:
                await self._attempt(job)

        while True:
            await self._prune_now_and_then()
            queued = await asyncio.to_thread(self.store.queued)
            due = next_in_lanes(queued, time.time())
            if due:
                await asyncio.gather(*(attempt(job) for job in due))
                continue
            due = await asyncio.to_thread(self.store.next_due)
            pause = 5.0 if due is None else min(5.0, max(0.0, due - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _prune_now_and_then(self) -> None:
        """Delete old finished requests: at start, then at most once per PRUNE_EVERY_SECONDS."""
        now = time.time()
        if now - self._pruned < PRUNE_EVERY_SECONDS:
            return
        self._pruned = now
        try:
            deleted = await asyncio.to_thread(self.store.prune, now - self.keep_seconds)
        except sqlite3.Error:
            logger.exception("Could not delete old requests from the intake")
            return
        if deleted:
            logger.info(
                "Deleted %d finished requests older than %.0f s", deleted, self.keep_seconds
            )

    async def _attempt(self, job: Job) -> None:
        """Start ``job``'s run (or post its status), or note when to try again."""
        try:
            if job.kind == "github_status":
                await self.notifier.post_github_status(job.payload)
                await asyncio.to_thread(self.store.update, job.id, state="started")
                return
            if job.kind == "slack_message":
                await self.notifier.post_slack_message(job.payload)
                await asyncio.to_thread(self.store.update, job.id, state="started")
                return
            started = await self.creator.create(job.run)
        except Permanent as exc:
            await asyncio.to_thread(self.store.update, job.id, state="failed", error=str(exc))
            logger.error("Request %s can never start: %s", job.key, exc)
            await self._settle(job.id)
            await _quietly(self.notifier.failed(job, str(exc)))
            return
        except Busy as exc:
            await self._retry(
                job,
                str(exc),
                pause=min(BUSY_RETRY_MAX_SECONDS, BUSY_RETRY_SECONDS * 1.5**job.attempts),
            )
            return
        except Exception as exc:
            await self._retry(job, f"{type(exc).__name__}: {exc}")
            return
        await asyncio.to_thread(
            self.store.update, job.id, state="started", run_id=started.id, run_url=started.url
        )
        if not await self._settle(job.id):
            await _quietly(self.notifier.started(job, started))

    async def _retry(self, job: Job, why: str, pause: float | None = None) -> None:
        if pause is None:
            pause = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2**job.attempts)
        next_try = time.time() + pause
        await asyncio.to_thread(
            self.store.update, job.id, attempts=job.attempts + 1, error=why, next_try=next_try
        )
        quick = (
            pause < BUSY_RETRY_MAX_SECONDS and job.attempts % 10
        )  # a busy engine: say so now and then, not each time
        log = logger.debug if quick else logger.warning
        log(
            "Starting %s failed (attempt %d, next in %.1f s): %s",
            job.key,
            job.attempts + 1,
            pause,
            why,
        )
        if not job.noticed and time.time() - job.created > SLOW_NOTICE_SECONDS:
            await asyncio.to_thread(self.store.update, job.id, noticed=1)
            await _quietly(self.notifier.waiting(job, why))

    async def _settle(self, job_id: int) -> bool:
        """Hand the ticket to whoever waits for it; True if someone did."""
        waiter = self._waiters.get(job_id)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(await self.ticket(job_id))
        return True


def lane(job: Job) -> str:
    """Requests in one lane become runs in the order they came: a run's app environment (a
    deploy, rollback, verify or dry run of it); anything else is a lane of its own."""
    parameters = job.payload.get("parameters") or {}
    if job.kind == "run" and parameters.get("app"):
        return json.dumps([parameters["app"], parameters.get("environment") or ""])
    return f"job-{job.id}"


def next_in_lanes(queued: list[tuple[Job, float]], now: float) -> list[Job]:
    """The jobs to attempt now: the oldest queued job of each lane, if it is due (one waiting
    for its next try holds back the later ones of its lane)."""
    first: dict[str, tuple[Job, float]] = {}
    for job, next_try in queued:
        first.setdefault(lane(job), (job, next_try))
    return [job for job, next_try in first.values() if next_try <= now]


async def _quietly(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception:  # telling people must never stop the dispatcher
        logger.exception("A notification failed")


BUSY_CODES = (429, 502, 503)
"""What Prefect answers when it cannot take a run just now: try again soon."""


async def busy_at_once(response: httpx.Response) -> None:
    """A response hook of the gateway's Prefect client (:data:`CLIENT_SETTINGS`): a run creation
    that Prefect answered "busy" raises :class:`Busy` at once.

    Prefect's client pauses before it checks how many tries are left: told to try once, it still
    sleeps 2 s after a 503 before it raises. The intake's own next try comes sooner."""
    request = response.request
    if response.status_code in BUSY_CODES and request.url.path.endswith("/create_flow_run"):
        await response.aread()
        raise Busy(f"Prefect answered {response.status_code}: {response.text[:200]}")


CLIENT_SETTINGS: dict[str, Any] = {"event_hooks": {"response": [busy_at_once]}}
"""``httpx_settings`` of the Prefect client that :class:`PrefectCreator` is given."""


class PrefectCreator:
    """Creates flow runs of Prefect deployments (by name) through ``client``, a Prefect client
    made with :data:`CLIENT_SETTINGS`."""

    def __init__(self, client: PrefectClient) -> None:
        self.client = client
        self._ids: dict[str, UUID] = {}

    async def create(self, run: Run) -> Started:
        deployment_id = self._ids.get(run.deployment)
        if deployment_id is None:
            deployment_id = (await self.client.read_deployment_by_name(run.deployment)).id
            self._ids[run.deployment] = deployment_id
        try:
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):  # the intake retries
                flow_run = await self.client.create_flow_run_from_deployment(
                    deployment_id,
                    parameters=run.parameters,
                    name=run.title,
                    tags=run.tags,
                    idempotency_key=run.key,
                )
        except ObjectNotFound:
            self._ids.pop(run.deployment, None)  # served again under a new id: look it up anew
            raise
        except PrefectHTTPStatusError as exc:
            code = exc.response.status_code
            if code in (400, 403, 422):
                raise Permanent(f"Prefect refused the run: {exc.response.text[:300]}") from None
            if code in BUSY_CODES:  # without busy_at_once, after Prefect's client paused
                raise Busy(f"Prefect answered {code}: {exc.response.text[:200]}") from None
            raise
        return Started(str(flow_run.id), url_for("flow-run", obj_id=flow_run.id))
