"""The HTTP gateway: where Slack and GitHub knock.

Routes::

    POST /slack/commands       the /deploy slash command       → chatops.slack_requests
    POST /slack/interactions   button clicks (roll back, ...)   → chatops.slack_requests
    POST /github/webhook       deployment / push / ping events  → chatops.github_events
    GET  /healthz              200 while the process is up

Every POST goes through the same gate, in this order: read the raw body (more than 1 MiB →
413, counted while reading, whatever Content-Length claims), check its signature (missing,
wrong or, for Slack, older than 5 minutes → 401; an unset secret refuses everything), and only
then parse it (malformed → 400). Nothing is started for a request that failed any of these.

Nothing slow happens before the answer: the configuration comes from memory
(:mod:`chatops.catalog`) and the Prefect calls are bounded by a budget (2 s for Slack, 8 s for
GitHub) after which the work carries on in the background (:mod:`chatops.starter`).

Run it with ``python -m chatops.gateway`` (or ``chatops gateway``); it listens on
``CHATOPS_GATEWAY_HOST`` (default 127.0.0.1) and ``CHATOPS_GATEWAY_PORT`` (8000), and reads
``CHATOPS_SLACK_SIGNING_SECRET`` and ``CHATOPS_GITHUB_WEBHOOK_SECRET`` once at start-up.
"""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from chatops import github_events, slack_requests
from chatops.catalog import Catalog, prefect_loader
from chatops.locks import Locks
from chatops.settings import DEPLOYMENT_NAME, ROLLBACK_DEPLOYMENT_NAME
from chatops.signatures import GITHUB_SIGNATURE_HEADER, SignatureError, verify_github, verify_slack
from chatops.starter import Background, PrefectStarter, Starter

MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0

logger = logging.getLogger("chatops.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway needs to know; :meth:`from_env` reads it from the environment."""

    slack_signing_secret: str = ""
    github_webhook_secret: str = ""
    deploy_deployment: str = DEPLOYMENT_NAME
    rollback_deployment: str = ROLLBACK_DEPLOYMENT_NAME
    slack_budget: float = 2.0
    github_budget: float = 8.0
    catalog_refresh_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> "GatewaySettings":
        return cls(
            slack_signing_secret=os.environ.get("CHATOPS_SLACK_SIGNING_SECRET", ""),
            github_webhook_secret=os.environ.get("CHATOPS_GITHUB_WEBHOOK_SECRET", ""),
        )


class BodyTooLarge(Exception):
    """The request body is over :data:`MAX_BODY_BYTES`."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
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


def create_app(
    settings: GatewaySettings | None = None,
    *,
    starter: Starter | None = None,
    responder: slack_requests.Responder | None = None,
) -> FastAPI:
    """The ASGI app. ``starter`` and ``responder`` replace the real ones (tests, tools)."""
    settings = settings or GatewaySettings.from_env()
    for name, secret in (
        ("CHATOPS_SLACK_SIGNING_SECRET", settings.slack_signing_secret),
        ("CHATOPS_GITHUB_WEBHOOK_SECRET", settings.github_webhook_secret),
    ):
        if not secret.strip():
            logger.warning("%s is not set: its endpoint answers 401 to every request", name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with get_client() as client:
            catalog = Catalog(prefect_loader(client), settings.catalog_refresh_seconds)
            if not await catalog.refresh():
                logger.warning("Starting without configuration; retrying in the background")
            catalog.start()
            background = Background()
            locks = Locks(client)
            runs = starter or PrefectStarter(client)
            app.state.background = background
            app.state.catalog = catalog
            app.state.slack = slack_requests.SlackRequests(
                catalog=catalog,
                locks=locks,
                starter=runs,
                background=background,
                responder=responder or slack_requests.WebhookResponder(),
                history=slack_requests.PrefectHistory(client),
                deploy_deployment=settings.deploy_deployment,
                rollback_deployment=settings.rollback_deployment,
                budget=settings.slack_budget,
            )
            app.state.github = github_events.GitHubEvents(
                catalog=catalog,
                locks=locks,
                starter=runs,
                background=background,
                deploy_deployment=settings.deploy_deployment,
                budget=settings.github_budget,
            )
            try:
                yield
            finally:
                await catalog.stop()
                await background.drain(SHUTDOWN_GRACE_SECONDS)

    app = FastAPI(
        title="chatops gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    _add_error_answers(app)

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, bool]:
        return {"ok": True, "configuration_loaded": request.app.state.catalog.snapshot.loaded}

    @app.post("/slack/commands")
    async def slack_command(request: Request) -> Response:
        form = await _verified_slack_form(request, settings.slack_signing_secret)
        if form.get("ssl_check"):  # Slack checking our certificate: nothing to do
            return Response(status_code=200)
        command = slack_requests.slash_command(form)
        reply = await request.app.state.slack.command(command)
        return JSONResponse(reply.body())

    @app.post("/slack/interactions")
    async def slack_interaction(request: Request) -> Response:
        form = await _verified_slack_form(request, settings.slack_signing_secret)
        action = slack_requests.block_action(form)
        if action is not None:
            await request.app.state.slack.interaction(action)
        return Response(status_code=200)

    @app.post("/github/webhook")
    async def github_webhook(request: Request) -> Response:
        body = await read_body(request)
        verify_github(
            body, request.headers.get(GITHUB_SIGNATURE_HEADER), settings.github_webhook_secret
        )
        delivery = github_events.read_delivery(request.headers, body)
        outcome = await request.app.state.github.handle(delivery)
        return JSONResponse(outcome.body, status_code=outcome.status)

    return app


async def _verified_slack_form(request: Request, secret: str) -> dict[str, str]:
    body = await read_body(request)
    verify_slack(body, request.headers, secret)
    return slack_requests.read_form(body)


def _add_error_answers(app: FastAPI) -> None:
    """The gate's refusals as HTTP answers; the reasons never include a secret."""

    async def too_large(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "the body is larger than 1 MiB"}, status_code=413)

    async def unauthenticated(request: Request, exc: Exception) -> Response:
        logger.warning("Refused %s: %s", request.url.path, exc)
        return JSONResponse({"error": "invalid or missing signature"}, status_code=401)

    async def malformed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(SignatureError, unauthenticated)
    app.add_exception_handler(slack_requests.BadRequest, malformed)
    app.add_exception_handler(github_events.BadDelivery, malformed)


def main(host: str | None = None, port: int | None = None) -> None:
    """Serve the gateway with uvicorn until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not PREFECT_API_URL.value():
        # Prefect would quietly start a throwaway server with an empty configuration instead.
        raise SystemExit(
            "chatops gateway: set PREFECT_API_URL to the Prefect server's API "
            "(e.g. http://127.0.0.1:4200/api)"
        )
    uvicorn.run(
        create_app(),
        host=host or os.environ.get("CHATOPS_GATEWAY_HOST", "127.0.0.1"),
        port=port or int(os.environ.get("CHATOPS_GATEWAY_PORT", "8000")),
        log_level="info",
    )


if __name__ == "__main__":
    main()
