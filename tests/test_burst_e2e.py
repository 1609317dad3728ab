"""A burst through the real gateway of a real ``chatops up`` on its defaults (Prefect on SQLite):
30 signed slash commands and 30 signed GitHub ``deployment`` webhooks at once, with the gateway
SIGKILLed in the middle (``chatops up`` starts it again).

Every request that was answered 2xx must become exactly one flow run, eventually; every answer
must come within Slack's 3 s and GitHub's 10 s. The deploys go to a host that refuses SSH
(127.0.0.1:1) from a repository that does not exist, so they fail at once: only getting from
request to run is under test.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prefect.settings import temporary_settings

from blocks import App, Environment
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import (
    ALICE,
    DEPLOYS,
    GITHUB_SECRET,
    SLACK_SECRET,
    deployment_event,
    github_headers,
    slack_headers,
    slash_body,
)
from tests.up_server import ChatopsUp, post_json, wait_for

pytestmark = pytest.mark.e2e
EACH = 30
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, float]:
    """POST once; (status or None when nothing answered, seconds until the answer)."""
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with _opener.open(request, timeout=15) as response:
            return response.status, time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started


def gateway_knows_hello(up: ChatopsUp, slack: FakeSlack) -> bool:
    """Whether the gateway answers ``where hello`` with the environment saved above (it reads
    the configuration again for a name it lacks)."""
    body = slash_body("where hello", slack.response_url(f"where-{time.time_ns()}"), ALICE, DEPLOYS)
    request = urllib.request.Request(
        f"{up.gateway}/slack/commands", data=body, headers=slack_headers(body)
    )
    with _opener.open(request, timeout=15) as response:
        return "127.0.0.1:1" in json.loads(response.read()).get("text", "")


def runs_by_key(up: ChatopsUp) -> dict[str, int]:
    """How many flow runs each idempotency key has."""
    found: dict[str, int] = {}
    offset = 0
    while True:
        page = post_json(f"{up.api}/flow_runs/filter", {"limit": 200, "offset": offset}, up.auth)
        for run in page:  # type: ignore[union-attr]
            key = run.get("idempotency_key") or ""
            found[key] = found.get(key, 0) + 1
        if len(page) < 200:  # type: ignore[arg-type]
            return found
        offset += 200


def test_a_burst_with_a_gateway_crash_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    env = {
        "CHATOPS_SLACK_SIGNING_SECRET": SLACK_SECRET,
        "CHATOPS_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }
    with ChatopsUp(tmp_path / "home", env=env) as up:
        with temporary_settings(up.prefect_settings()):
            App(
                repository="Codertocat/Hello-World",
                clone_url=str(tmp_path / "no-such-repository"),  # checkout fails at once
                environments=["production"],
                default_environment="production",
            ).save("hello", overwrite=True)
            Environment(
                hosts=["127.0.0.1:1"],
                ssh_user="nobody",
                ssh_private_key="none",
                deploy_path="/srv/app",
                restart_command="true",
                connect_timeout=1,
            ).save("hello-production", overwrite=True)
        assert wait_for(lambda: gateway_knows_hello(up, fake_slack), 30), "config not read"

        requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        for n in range(EACH):
            trigger = f"{time.time_ns()}.{n}.burst"
            url = fake_slack.response_url(f"burst-{n}")
            body = slash_body(f"hello@v{n} to production", url, ALICE, DEPLOYS, trigger_id=trigger)
            requests.append((f"slack-{trigger}", "/slack/commands", body, slack_headers(body)))
            event = deployment_event(id=900_000 + n)
            requests.append(
                (
                    f"github-deployment-{900_000 + n}",
                    "/github/webhook",
                    event,
                    github_headers(event, "deployment"),
                )
            )

        results: dict[str, tuple[int | None, float]] = {}
        killed = threading.Event()

        def one(item: tuple[str, str, bytes, dict[str, str]]) -> None:
            key, path, body, headers = item
            results[key] = send(f"{up.gateway}{path}", body, headers)
            if len(results) == len(requests) // 2 and not killed.is_set():
                killed.set()
                os.kill(up.child("chatops.gateway"), signal.SIGKILL)

        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(one, requests))

        accepted = {k for k, (status, _) in results.items() if status is not None and status < 300}
        refused = {k: s for k, (s, _) in results.items() if s is not None and s >= 300}
        assert refused == {}, f"requests answered with an error: {refused}"
        assert killed.is_set() and len(accepted) >= len(requests) // 2
        slack_waits = [t for k, (s, t) in results.items() if s is not None and k.startswith("s")]
        github_waits = [t for k, (s, t) in results.items() if s is not None and k.startswith("g")]
        assert max(slack_waits) < 3.0 and max(github_waits) < 10.0, (slack_waits, github_waits)

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = runs_by_key(up)
            if accepted <= set(runs):
                break
            time.sleep(2)
        missing = accepted - set(runs)
        assert missing == set(), f"{len(missing)} accepted requests never became runs"
        assert all(runs[key] == 1 for key in accepted), "a request started two runs"
        print(
            f"measured: {len(requests)} signed requests, the gateway SIGKILLed mid-burst: "
            f"{len(accepted)} accepted, each became exactly one run; slowest answer to Slack "
            f"{max(slack_waits):.2f} s, to GitHub {max(github_waits):.2f} s"
        )
