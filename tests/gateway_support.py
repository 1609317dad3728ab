"""Shared pieces of the gateway tests: signed requests, a test configuration, a recording creator
of runs, a user who types into Slack.

No tests here; ``test_gateway*.py`` import what they need, and take the fixtures of
tests/gateway_fixtures.py.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from starlette.testclient import TestClient

from adapters.locks import FREEZE_TAG, LOCK_TAG
from adapters.run_signing import claims, problem, signing_key
from blocks import App, Environment, GitHubAccess, SlackAccess
from chatops.gateway import SLOW_NOTE, create_app
from chatops.intake import Started
from chatops.request import Run
from chatops.settings import GatewaySettings
from chatops.signatures import sign_github, sign_slack
from chatops.users import UserStore
from tests.fakes import FIXTURES
from tests.fakes.slack_api import FakeSlack

SLACK_SECRET = "slack-signing-secret-for-tests"
GITHUB_SECRET = "github-webhook-secret-for-tests"
ALICE, BOB, BOSS = "U0ALICE001", "U0BOB00001", "U0BOSS0001"
DEPLOYS, RANDOM = "C0DEPLOYS1", "C0RANDOM01"
SETTINGS = GatewaySettings(
    slack_signing_secret=SLACK_SECRET,
    github_webhook_secret=GITHUB_SECRET,
    catalog_reread_seconds=0.05,  # an unknown name rereads the configuration without a 1 s pause
)
_users_dir = tempfile.mkdtemp(prefix="chatops-test-users-")
atexit.register(shutil.rmtree, _users_dir, ignore_errors=True)
USERS = Path(_users_dir) / "users.json"
"""The CLI users of the test gateways (:func:`token_for` adds them)."""
_tokens: dict[str, str] = {}


def token_for(user: str) -> str:
    """The CLI token of ``user`` in :data:`USERS`, made on first use."""
    if user not in _tokens:
        _tokens[user] = UserStore(USERS).add(user)
    return _tokens[user]


def cli_headers(user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}"}


WEBHOOKS = FIXTURES / "github_webhooks"
OCTOKIT_SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
"""The commit of octokit's example payloads."""
SLACK_FIXTURES = FIXTURES / "slack"


class RecordingCreator:
    """Records the runs the intake creates; ``delay`` plays a slow Prefect API, ``failures``
    makes the first calls fail as an overloaded one does."""

    def __init__(self, delay: float = 0.0, failures: int = 0) -> None:
        self.delay = delay
        self.failures = failures
        self.runs: list[Run] = []
        self.keys: set[str] = set()

    async def create(self, run: Run) -> Started:
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("503 database is locked")
        if run.key not in self.keys:  # Prefect gives the same run back for a known key
            self.keys.add(run.key or "")
            self.runs.append(run)
        number = len(self.runs)
        return Started(id=f"run-{number}", url=f"http://prefect.test/runs/flow-run/run-{number}")

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return [run.parameters for run in self.runs]


def save_config() -> None:
    """Apps: shop (default env staging; production restricted), billing (no default env),
    hello (octokit's Codertocat/Hello-World; staging auto-deploys master), ghost (env missing).

    Blocks already saved as they are here are left as they are: a module that set them up before
    (one Prefect server serves a worker's whole session) costs two reads, not thirteen saves."""

    def env(hosts: list[str], **extra: Any) -> Environment:
        return Environment(
            hosts=hosts,
            ssh_private_key="not-a-real-key",
            deploy_path="/srv/app",
            restart_command="true",
            **extra,
        )

    wanted: dict[str, Any] = {
        "shop": App(
            repository="acme/shop",
            default_environment="staging",
            environments=["staging", "production"],
            tasks={"migrate": "./bin/migrate"},
        ),
        "shop-staging": env(["web-1", "web-2"]),
        "shop-production": env(
            ["web-1.prod", "web-2.prod"],
            production=True,
            allowed_users=[BOSS],
            allowed_channels=[DEPLOYS],
        ),
        "billing": App(repository="acme/billing", environments=["staging", "production"]),
        "billing-staging": env(["billing-1"]),
        "billing-production": env(["billing-2"]),
        "hello": App(
            repository="Codertocat/Hello-World",
            default_ref="master",
            environments=["staging", "production"],
        ),
        "hello-staging": env(["hello-1"], auto_deploy_branch="master"),
        "hello-production": env(["hello-2"]),
        "ghost": App(repository="acme/ghost", environments=["qa"]),
    }
    saved = {**saved_blocks(App), **saved_blocks(Environment)}
    for name, block in wanted.items():
        if saved.get((type(block), name)) != fields_of(block):
            block.save(name, overwrite=True)


def saved_blocks(kind: Any) -> dict[tuple[Any, str], dict[str, Any]]:
    """Every saved block of the Block class ``kind``, secrets included, by (kind, name)."""
    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(kind.get_block_type_slug())
        except PrefectHTTPStatusError as exc:  # 404: the type is not registered yet
            if exc.response.status_code != 404:
                raise
            return {}
    return {
        (kind, document.name): fields_of(kind._from_block_document(document))
        for document in documents
        if document.name
    }


def fields_of(block: Any) -> dict[str, Any]:
    """The block's own fields (not the document id and name Prefect keeps on a loaded one)."""
    return {k: v for k, v in block.model_dump().items() if not k.startswith("_")}


def clear_locks() -> None:
    with get_client(sync_client=True) as client:
        for variable in client.read_variables(limit=200):
            if LOCK_TAG in variable.tags or FREEZE_TAG in variable.tags:
                client.delete_variable_by_name(variable.name)


def connect_fakes(repository: Path, github: Any, slack: Any = None) -> None:
    """A clean slate for one end-to-end test: no locks or freezes, ``acme/shop`` served from
    ``repository`` by the fake GitHub, and the GitHub (and Slack) blocks pointing at the fakes."""
    clear_locks()
    github.add_repo("acme/shop", git_dir=repository)
    GitHubAccess(token=github.token, api_url=github.url).save("default", overwrite=True)
    if slack is not None:
        SlackAccess(bot_token=slack.token, api_url=slack.api_url).save("default", overwrite=True)


@contextlib.contextmanager
def gateway(
    creator: Any = None,
    settings: GatewaySettings = SETTINGS,
    intake: Path | None = None,
    users: Path = USERS,
) -> Iterator[TestClient]:
    """The gateway app, lifespan included (configuration loaded from the test Prefect), with
    its own intake database (``intake``, or a fresh one) and the CLI users in ``users``."""
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(
            settings,
            creator=creator,
            intake_path=intake or Path(scratch) / "i.db",
            users_path=users,
        )
        with TestClient(app) as client:
            yield client


# --------------------------------------------------------------------------- Slack requests
def slack_headers(
    body: bytes, secret: str = SLACK_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign_slack(body, ts, secret),
        "Content-Type": "application/x-www-form-urlencoded",
    }


_trigger = iter(range(10**9))


def slash_body(
    text: str,
    response_url: str,
    user: str = ALICE,
    channel: str = DEPLOYS,
    trigger_id: str | None = None,
) -> bytes:
    """A slash command form as Slack sends it (field set of the real payload fixture)."""
    form = {
        "token": "ignored",
        "team_id": "T0TEAM0001",
        "team_domain": "acme",
        "channel_id": channel,
        "channel_name": "deploys",
        "user_id": user,
        "user_name": "someone",
        "command": "/deploy",
        "text": text,
        "api_app_id": "A0APP00001",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{time.time_ns()}.{next(_trigger)}.abc",
    }
    return urllib.parse.urlencode(form).encode()


def action_body(
    action_id: str, value: Any, response_url: str, user: str = ALICE, channel: str = DEPLOYS
) -> bytes:
    """A block_actions form built on the bolt-python fixture payload."""
    payload = json.loads((SLACK_FIXTURES / "block_actions.payload.json").read_text())
    payload["user"]["id"] = user
    payload["channel"]["id"] = channel
    payload["container"]["channel_id"] = channel
    payload["response_url"] = response_url
    payload["trigger_id"] = f"{time.time_ns()}.{next(_trigger)}.click"
    payload["actions"][0].update(
        action_id=action_id, value=value if isinstance(value, str) else json.dumps(value)
    )
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def post_slack(client: TestClient, path: str, body: bytes, **header_args: Any) -> Any:
    return client.post(path, content=body, headers=slack_headers(body, **header_args))


# --------------------------------------------------------------------------- GitHub requests
def github_headers(
    body: bytes, event: str, delivery: str | None = None, secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": sign_github(body, secret),
        "X-GitHub-Delivery": delivery or f"delivery-{time.time_ns()}",
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }


def webhook_fixture(name: str) -> bytes:
    """An octokit example payload, byte for byte."""
    return (WEBHOOKS / f"{name}.payload.json").read_bytes()


def deployment_event(**changes: Any) -> bytes:
    """octokit's deployment payload with fields of ``deployment`` (or ``repository``) changed."""
    payload = json.loads(webhook_fixture("deployment"))
    repository = changes.pop("repository", None)
    if repository:
        payload["repository"]["full_name"] = repository
    login = changes.pop("creator", None)
    if login:
        payload["deployment"]["creator"]["login"] = login
    payload["deployment"].update(changes)
    return json.dumps(payload).encode()


def deployment_made_on_github(github: Any, ref: str, note: str) -> tuple[Any, bytes]:
    """A deployment of acme/shop's ``ref`` to staging made on the (fake) GitHub by octocat, and
    the ``deployment`` event GitHub sends for it."""
    made = (
        github.client()
        .get_repo("acme/shop")
        .create_deployment(
            ref,
            environment="staging",
            required_contexts=[],
            auto_merge=False,
            payload={"note": note},
        )
    )
    body = deployment_event(
        repository="acme/shop",
        environment="staging",
        id=made.id,
        sha=made.sha,
        ref=ref,
        creator="octocat",
        payload={"note": note},
    )
    return made, body


@contextlib.contextmanager
def deployment_on_fake_github(
    github: Any, repository: str, ref: str, environment: str
) -> Iterator[Any]:
    """A deployment of ``repository``'s ``ref`` (at octokit's example commit) to
    ``environment``, made on the fake GitHub while the GitHub block points at it (removed after)."""
    github.add_repo(repository, refs={ref: OCTOKIT_SHA})
    GitHubAccess(token=github.token, api_url=github.url).save("default", overwrite=True)
    try:
        repo = github.client().get_repo(repository)
        yield repo.create_deployment(ref, environment=environment, required_contexts=[])
    finally:
        GitHubAccess.delete("default")


def post_github(
    client: TestClient,
    body: bytes,
    event: str,
    delivery: str | None = None,
    secret: str = GITHUB_SECRET,
) -> Any:
    return client.post(
        "/github/webhook", content=body, headers=github_headers(body, event, delivery, secret)
    )


def wait_for(condition: Any, seconds: float = 10.0) -> Any:
    """Poll ``condition()`` until it is truthy; return its value (or fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {seconds} s")


def post_cli(
    client: TestClient,
    text: str,
    user: str = "alice",
    token: str | None = None,
    claims: str | None = None,
    **extra: Any,
) -> Any:
    """A terminal line, as the ``chatops`` CLI sends it with ``user``'s token (or ``token``);
    ``claims`` adds a ``user`` field to the body, as a CLI that lies about its name would."""
    body = {"text": text, **extra, **({"user": claims} if claims is not None else {})}
    return client.post(
        "/cli/commands",
        json=body,
        headers={"Authorization": f"Bearer {token_for(user) if token is None else token}"},
    )


# --------------------------------------------------------------------------- runs
def signed_by_the_gateway(flow_name: str, run: Run) -> dict:
    """The run's parameters without its signature, once the signature is shown to cover them
    and the run's request key (and to fail when one of them is changed)."""
    parameters = dict(run.parameters)
    signature = parameters.pop("signature")
    key = signing_key()
    assert problem(claims(flow_name, parameters, run.key), signature, key) is None
    assert problem(claims(flow_name, parameters, "another-key"), signature, key) is not None
    changed = {**parameters, "force": not parameters["force"]}
    assert problem(claims(flow_name, changed, run.key), signature, key) is not None
    return parameters


# --------------------------------------------------------------------------- Slack users
class Chat:
    """Types slash commands as a user would, and reads what came back."""

    def __init__(self, client: TestClient, slack: FakeSlack) -> None:
        self.client = client
        self.slack = slack
        self.count = 0

    def command(
        self, text: str, user: str = ALICE, channel: str = DEPLOYS, patient: bool = True
    ) -> dict:
        """The answer to ``text``. A ``patient`` user also reads the follow-up when the reply
        only said Prefect is slow (a busy machine's Prefect may answer after Slack's budget)."""
        response = post_slack(self.client, "/slack/commands", self.body(text, user, channel))
        assert response.status_code == 200, response.text
        reply = response.json()
        if patient and reply["text"].endswith(SLOW_NOTE):
            [reply] = self.later(seconds=30)
        return reply

    def body(self, text: str, user: str = ALICE, channel: str = DEPLOYS) -> bytes:
        self.count += 1
        self.last_url_name = f"cmd-{self.count}"
        return slash_body(text, self.slack.response_url(self.last_url_name), user, channel)

    def later(self, seconds: float = 10.0) -> list[dict]:
        """What the gateway posted to the last command's response_url."""
        return wait_for(lambda: self.slack.responses(self.last_url_name), seconds)

    def click(
        self, action_id: str, value: object, user: str = ALICE, channel: str = DEPLOYS
    ) -> list[dict]:
        self.count += 1
        name = f"click-{self.count}"
        body = action_body(action_id, value, self.slack.response_url(name), user, channel)
        response = post_slack(self.client, "/slack/interactions", body)
        assert response.status_code == 200 and response.content == b""
        return wait_for(lambda: self.slack.responses(name))
