# ruff: noqa: F811 - the tests take the imported `bed` fixture as a parameter
"""Abort for real: ``/deploy abort``, the deploy card's Abort button and ``chatops abort`` stop a
deploy of two sshd hosts running Tomcat on a real ``chatops up``, while its last batch restarts
(from Slack: a batch of more than 30 s, after which Prefect's runner would kill the deploy).

The host it switched goes back: every host ends on the release it ran before and serves it,
with no switching journal left; GitHub (fake) gets ``error`` naming who aborted, and Slack (fake)
is told. Someone the environment does not allow is refused and the deploy goes on; an abort with
nothing running says so. The tests share one ``chatops up``, each with its own hosts and fakes.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.gateway_support import ALICE, BOB, DEPLOYS, action_body, slack_headers, slash_body
from tests.test_crash_e2e import (  # noqa: F401 - bed, shared_bed and shared_up are fixtures
    Bed,
    bed,
    current,
    delay_restart,
    serves,
    shared_bed,
    shared_up,
    until,
)
from tests.testbed.hosts import TestHost
from tests.up_server import ChatopsUp, post_json

pytestmark = pytest.mark.e2e
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_slack(up: ChatopsUp, path: str, body: bytes) -> urllib.request.Request:
    request = urllib.request.Request(f"{up.gateway}{path}", data=body, headers=slack_headers(body))
    with _opener.open(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def on_release(hosts: list[TestHost], sha: str) -> None:
    """Every host's ``current`` is the release of ``sha``, it serves it, and nothing is left
    half-switched."""
    for host in hosts:
        assert (current(host) or "").endswith(sha[:7]), f"{host.address} on {current(host)}"
        assert serves(host, sha), f"{host.address} does not serve {sha[:7]}"
        assert not (host.root / "SWITCHING").exists(), f"{host.address} left switching"


def run_states(up: ChatopsUp) -> list[str]:
    """The state names of the deploy runs, newest first."""
    runs = post_json(f"{up.api}/flow_runs/filter", {"sort": "START_TIME_DESC"}, up.auth)
    return [r["state"]["name"] for r in runs if r["name"].startswith("shop@")]  # type: ignore[index]


def github_errors(bed: Bed, sha: str) -> list[str]:
    deployment = next(d for d in bed.github.deployments if d["sha"] == sha)
    return [
        s.get("description") or ""
        for s in bed.github.statuses(deployment["id"])
        if s["state"] == "error"
    ]


def in_last_batch(bed: Bed) -> bool:
    first, second = bed.hosts
    return serves(first, bed.repo.v2) and (second.root / "SWITCHING").exists()


def card_button(bed: Bed, action_id: str) -> dict | None:
    for message in bed.slack.top_level(DEPLOYS):
        for block in message.blocks or []:
            for element in block.get("elements", []) if block["type"] == "actions" else []:
                if element.get("action_id") == action_id:
                    return element
    return None


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_abort_from_slack_switches_every_host_back_and_says_who(shared_bed: Bed) -> None:
    v1, v2 = shared_bed.repo.v1, shared_bed.repo.v2
    _, second = shared_bed.hosts
    with shared_bed.up() as up:
        shared_bed.configure(up, health_timeout=60, allowed_users=[ALICE])
        shared_bed.deploy(up, "v1")
        delay_restart(second, v2, "sleep 35")  # longer than Prefect's own 30 s to a kill
        assert "shop@v2 → staging" in shared_bed.slash(up, "shop@v2 to staging")["text"]
        until(lambda: in_last_batch(shared_bed), 120, "the last batch")

        refused = slash_as(shared_bed, up, BOB, "abort shop in staging")
        assert "may not deploy" in refused["text"], refused
        assert run_states(up)[0] == "Running" and in_last_batch(shared_bed)

        button = card_button(shared_bed, "abort")
        assert button is not None, "the running deploy's card has no Abort button"
        url = shared_bed.slack.response_url("abort-click")
        post_slack(up, "/slack/interactions", action_body("abort", button["value"], url))
        clicked = time.monotonic()
        until(lambda: shared_bed.slack.responses("abort-click"), 20, "the click answered")
        answer = shared_bed.slack.responses("abort-click")[0]
        assert f"<@{ALICE}> aborted" in answer["text"], answer
        until(lambda: run_states(up)[0] in ("Cancelled", "Failed", "Crashed"), 120, "the run ends")
        until(lambda: github_errors(shared_bed, v2), 30, "GitHub told")
        print(
            f"measured: abort from Slack: run over and GitHub told "
            f"{time.monotonic() - clicked:.1f} s after the click"
        )

        on_release(shared_bed.hosts, v1)
        assert any(
            "aborted by" in d.lower() and ALICE in d for d in github_errors(shared_bed, v2)
        ), github_errors(shared_bed, v2)
        told = [m.text for m in shared_bed.slack.top_level(DEPLOYS)]
        assert any(f"aborted by {ALICE}" in text for text in told), told

        nothing = shared_bed.slash(up, "abort shop in staging")
        assert "Nothing is deploying *shop* to *staging*" in nothing["text"], nothing


def slash_as(bed: Bed, up: ChatopsUp, user: str, text: str) -> dict:
    body = slash_body(text, bed.slack.response_url(f"r{time.time_ns()}"), user, DEPLOYS)
    return post_slack(up, "/slack/commands", body)


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_abort_from_the_terminal_switches_every_host_back(shared_bed: Bed) -> None:
    v1, v2 = shared_bed.repo.v1, shared_bed.repo.v2
    _, second = shared_bed.hosts
    with shared_bed.up() as up:
        shared_bed.configure(up, health_timeout=60, cli_users=["erin"])
        shared_bed.deploy(up, "v1")
        delay_restart(second, v2, "sleep 8")
        following = up.cli_process("deploy", "shop@v2", "to", "staging", user="erin")
        until(lambda: in_last_batch(shared_bed), 120, "the last batch")

        refused = up.cli("abort", "shop", "in", "staging", user="mallory")
        assert refused.returncode == 2 and "may not deploy" in refused.stderr + refused.stdout

        asked = time.monotonic()
        aborted = up.cli("abort", "shop", "in", "staging", user="erin")
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        assert "erin aborted" in aborted.stdout, aborted.stdout
        out, _ = following.communicate(timeout=120)
        assert following.returncode == 1, out
        print(f"measured: abort from the terminal: run over {time.monotonic() - asked:.1f} s later")

        on_release(shared_bed.hosts, v1)
        until(lambda: github_errors(shared_bed, v2), 30, "GitHub told")
        assert any("aborted by erin" in d.lower() for d in github_errors(shared_bed, v2))

        nothing = up.cli("abort", "shop", "in", "staging", user="erin")
        assert "Nothing is deploying shop to staging" in nothing.stdout, nothing.stdout
