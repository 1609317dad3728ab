"""Starting flow runs: the one place where a request becomes Prefect flow-run parameters.

:func:`deploy_run` and :func:`rollback_run` build a :class:`RunRequest` (deployment name, the
flow's parameters, the run's title and tags, an idempotency key); a :class:`Starter` turns it
into a flow run::

    request = deploy_run(app="shop", environment="staging", ref="v1", requested_by="U1",
                         notify={"channel": "C1", "thread_ts": None}, key="slack-123.456")
    run = await PrefectStarter(client).start(request)     # StartedRun(id, name, url)

Starting means *scheduling*: ``arun_deployment(..., timeout=0)`` returns as soon as the run
exists, and the runner serving the deployment picks it up. The same ``idempotency_key`` always
gives back the same run, which makes a webhook delivered twice, or a start retried after a
timeout, harmless.

The Prefect API is usually quick (tens of ms) but not always (SQLite lock contention costs
seconds). Slack wants an answer within 3 s, so callers wait only for a budget with
:meth:`Background.within` and let the rest finish in the background.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prefect.client.orchestration import PrefectClient
from prefect.deployments import arun_deployment
from prefect.utilities.urls import url_for

from chatops.settings import DEPLOYMENT_NAME, ROLLBACK_DEPLOYMENT_NAME
from flows.report import run_title
from flows.rollback import PREVIOUS

T = TypeVar("T")
logger = logging.getLogger("chatops.starter")


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to start one flow run of a Prefect deployment."""

    deployment: str
    parameters: dict[str, Any]
    title: str
    idempotency_key: str | None = None

    @property
    def tags(self) -> list[str]:
        return [f"app:{self.parameters['app']}", f"env:{self.parameters['environment']}"]


@dataclass(frozen=True)
class StartedRun:
    """A flow run that exists (it may still be waiting for the runner)."""

    id: str
    name: str
    url: str | None


class Starter(Protocol):
    """Anything that can start a run; tests swap in a recording one."""

    async def start(self, request: RunRequest) -> StartedRun: ...


def deploy_run(
    *,
    app: str,
    environment: str,
    ref: str,
    requested_by: str,
    sha: str | None = None,
    deployment_id: int | None = None,
    force: bool = False,
    hosts: list[str] | None = None,
    task: str = "deploy",
    notify: dict[str, Any] | None = None,
    key: str | None = None,
    deployment: str = DEPLOYMENT_NAME,
) -> RunRequest:
    """A run of the deploy flow (see ``flows/deploy.py`` for what each parameter does)."""
    parameters = {
        "app": app,
        "environment": environment,
        "ref": ref,
        "sha": sha,
        "deployment_id": deployment_id,
        "requested_by": requested_by,
        "force": force,
        "hosts": hosts,
        "task": task,
        "notify": notify,
    }
    return RunRequest(deployment, parameters, run_title(app, ref, sha, environment), key)


def rollback_run(
    *,
    app: str,
    environment: str,
    ref: str | None,
    requested_by: str,
    hosts: list[str] | None = None,
    notify: dict[str, Any] | None = None,
    key: str | None = None,
    deployment: str = ROLLBACK_DEPLOYMENT_NAME,
) -> RunRequest:
    """A run of the rollback flow; ``ref=None`` goes back to the previous release."""
    parameters = {
        "app": app,
        "environment": environment,
        "ref": ref,
        "requested_by": requested_by,
        "hosts": hosts,
        "notify": notify,
    }
    title = run_title(app, ref or PREVIOUS, None, environment)
    return RunRequest(deployment, parameters, title, key)


class PrefectStarter:
    """Starts runs through the Prefect API with ``client`` (an entered ``PrefectClient``)."""

    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    async def start(self, request: RunRequest) -> StartedRun:
        run = await arun_deployment(
            request.deployment,
            client=self.client,
            parameters=request.parameters,
            timeout=0,
            idempotency_key=request.idempotency_key,
            flow_run_name=request.title,
            tags=request.tags,
        )
        return StartedRun(id=str(run.id), name=run.name, url=url_for("flow-run", obj_id=run.id))


class Background:
    """Work that may outlive the request that began it, kept referenced until it is done.

    ``within`` waits for a coroutine only up to a budget::

        reply = await background.within(start_and_describe(), 2.0, then=post_to_response_url)
        if reply is None:   # still running: it carries on and ``then`` gets its result later
            reply = "Starting…"

    The work itself is never cancelled by the budget; a failure after the budget is logged.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T], name: str = "background") -> asyncio.Task[T]:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def within(
        self, work: Coroutine[Any, Any, T], seconds: float, then: Callable[[T], Awaitable[None]]
    ) -> T | None:
        """``work``'s result if it is done within ``seconds``; else None and ``then(result)``
        once it is."""
        task = self.spawn(work, "budgeted")
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if done:
            return task.result()
        self.spawn(self._deliver(task, then), "deliver-late")
        return None

    async def drain(self, seconds: float) -> None:
        """Give unfinished work up to ``seconds`` (at shutdown), then cancel what is left."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=seconds)
        for task in late:
            task.cancel()
        if late:
            logger.warning("Stopped with %d background jobs unfinished", len(late))

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def _deliver(self, task: asyncio.Task[T], then: Callable[[T], Awaitable[None]]) -> None:
        await then(await task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Background job %s failed", task.get_name(), exc_info=task.exception())
