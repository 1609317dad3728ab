"""Requests typed on a pull request: what the gateway reads, who it answers, what it starts.

The gateway runs with its real lifespan against the test Prefect server (configuration, locks);
GitHub is the fake, and creating runs is recorded (``RecordingCreator``): the deploy itself is
the end-to-end test's (``test_pull_request_e2e.py``). Every answer is read where a person reads
it: on the pull request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from adapters.pull_request import PullRequestComment
from adapters.run_signing import claims, problem, sign, signing_key
from blocks import GitHubAccess
from chatops.github.events import Delivery, Ignored
from chatops.github.pull_requests import read_comment
from model.summary import DeploySummary, Step
from render.pull_request import comment_markdown, markdown
from render.slack_card import render_deploy_message
from tests.fakes.github_api import FakeGitHub
from tests.gateway_support import (
    RecordingCreator,
    clear_locks,
    gateway,
    post_github,
    save_config,
    wait_for,
)
from tests.pull_request_support import comment_event

BASE_SHA = "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d"
HEAD_SHA = "743f5a58b0bce91c4eab744ff7e39dfca9e6e8a5"


@pytest.fixture(scope="module")
def configured(prefect_server: None) -> None:
    save_config()


@pytest.fixture
def github(configured: None, fake_github: FakeGitHub) -> Iterator[FakeGitHub]:
    clear_locks()
    fake_github.add_repo("acme/shop", refs={"main": BASE_SHA})
    fake_github.add_pull_request("acme/shop", 7, HEAD_SHA, head_ref="fix", head_repo="octo/shop")
    fake_github.set_permission("acme/shop", "alice", "write")
    GitHubAccess(token=fake_github.token, api_url=fake_github.url).save("default", overwrite=True)
    yield fake_github
    GitHubAccess.delete("default")
    clear_locks()
    assert fake_github.violations == []


@pytest.fixture
def starter() -> RecordingCreator:
    return RecordingCreator()


@pytest.fixture
def client(starter: RecordingCreator, github: FakeGitHub) -> Iterator[TestClient]:
    with gateway(starter) as test_client:
        yield test_client


def ask(client: TestClient, github: FakeGitHub, text: str, login: str = "alice", **kw: Any) -> Any:
    """Comment ``text`` on pull request 7 as ``login``; GitHub's delivery of it, answered."""
    body = comment_event(github, "acme/shop", 7, login, text, **kw)
    return post_github(client, body, "issue_comment")


def answers(github: FakeGitHub, count: int = 1) -> list[str]:
    """The bot's comments on pull request 7, once there are ``count`` of them."""

    def mine() -> list[str]:
        found = [c["body"] for c in github.comments("acme/shop", 7) if c["user"] == github.login]
        return found if len(found) >= count else []

    return wait_for(mine, 20)


def settled(answer: str) -> str | None:
    """``answer`` once it is final: not the placeholder a deploy's answer is edited from."""
    return None if answer.endswith("starting…") else answer


def asked_comment(github: FakeGitHub, text: str) -> int:
    return next(c["id"] for c in github.comments("acme/shop", 7) if c["body"] == text)


def test_deploy_from_a_pull_request_starts_its_head_and_hands_the_run_its_comment(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    response = ask(client, github, ".deploy to staging")
    assert response.status_code == 202, response.text
    [starting] = answers(github)
    question = asked_comment(github, ".deploy to staging")
    wait_for(lambda: github.reactions(question) == ["eyes", "rocket"], 20)

    assert f"asked to deploy this pull request (`{HEAD_SHA[:12]}`) to staging" in starting
    [parameters] = starter.parameters
    mine = next(c for c in github.comments("acme/shop", 7) if c["user"] == github.login)
    assert parameters["ref"] == "pull/7/head" and parameters["sha"] == HEAD_SHA
    assert parameters["environment"] == "staging" and parameters["app"] == "shop"
    assert (parameters["requested_by"], parameters["via"]) == ("alice", "github")
    assert parameters["pull_request"] == {
        "repository": "acme/shop",
        "number": 7,
        "comment_id": mine["id"],
        "url": "https://github.com/acme/shop/pull/7",
    }
    assert starter.runs[0].key == f"github-comment-{question}"


def test_the_signature_covers_the_comment_a_run_edits(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    ask(client, github, ".deploy! to staging")
    answers(github)
    [run] = wait_for(lambda: starter.runs, 20)
    parameters = dict(run.parameters)
    assert parameters["force"] is True
    assert (
        problem(claims("deploy", parameters, run.key), parameters["signature"], signing_key(False))
        is None
    )
    moved = {**parameters["pull_request"], "comment_id": 1}  # someone else's comment
    forged = {**parameters, "pull_request": moved}
    assert problem(claims("deploy", forged, run.key), parameters["signature"], signing_key(False))
    dataclass_form = {
        **parameters,
        "pull_request": PullRequestComment(**parameters["pull_request"]),
    }
    assert claims("deploy", dataclass_form, run.key) == claims("deploy", parameters, run.key)


def test_a_commenter_without_write_access_is_refused_and_nothing_starts(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    github.set_permission("acme/shop", "mallory", "read")
    assert ask(client, github, ".deploy to staging", login="mallory").status_code == 202
    [refusal] = answers(github)
    assert refusal.startswith(":no_entry: @mallory, only people with write access to acme/shop")
    assert "nothing was done" in refusal
    assert github.reactions(asked_comment(github, ".deploy to staging")) == ["eyes"]
    assert starter.runs == []
    assert not [r for r in github.requests if r.path.endswith("/pulls/7")], "no head was read"


@pytest.mark.parametrize(
    ("text", "options", "why"),
    [
        ("LGTM, ship it", {}, "not a command"),
        ("...and one more thing", {}, "not a command"),
        (".deploy to staging", {"kind": "Bot"}, "bots"),
        (".deploy to staging", {"login": "renovate[bot]"}, "bots"),
        (".deploy to staging", {"on_pull_request": False}, "not on a pull request"),
        (".deploy to staging", {"action": "edited"}, "action 'edited'"),
    ],
)
def test_comments_not_for_us_are_ignored_silently(
    client: TestClient,
    github: FakeGitHub,
    starter: RecordingCreator,
    text: str,
    options: dict[str, Any],
    why: str,
) -> None:
    login = options.pop("login", "alice")
    github.set_permission("acme/shop", login, "write")
    before = len(github.requests)
    response = ask(client, github, text, login=login, **options)
    assert response.status_code == 200 and why in response.json()["ignored"]
    assert len(github.requests) == before, "nothing is said on GitHub"
    assert starter.runs == []


def test_the_same_delivery_twice_is_answered_once(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    body = comment_event(github, "acme/shop", 7, "alice", ".wcid")
    assert post_github(client, body, "issue_comment", delivery="d-1").status_code == 202
    again = post_github(client, body, "issue_comment", delivery="d-2")
    assert again.status_code == 200 and "answered already" in again.json()["ignored"]
    answers(github)
    assert len(answers(github)) == 1


def test_lock_and_unlock_from_a_pull_request(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    ask(client, github, ".lock staging: demo at 3pm")
    [locked] = answers(github)
    assert locked == ":lock: alice locked **staging** on **shop**: demo at 3pm."
    ask(client, github, ".deploy to staging", login="bob")
    github.set_permission("acme/shop", "bob", "write")
    ask(client, github, ".deploy to staging", login="bob")
    # The deploy is answered "starting…" at once, then that comment is edited into the refusal.
    refused = wait_for(lambda: settled(answers(github, 3)[2]), 20)
    assert refused.startswith(":lock: ") and "alice" in refused, refused
    assert starter.runs == []
    ask(client, github, ".unlock staging")
    assert answers(github, 4)[3] == ":unlock: alice unlocked **staging** on **shop**."


def test_help_wcid_and_a_mistyped_command_are_answered(
    client: TestClient, github: FakeGitHub
) -> None:
    ask(client, github, ".help")
    assert ".deploy to staging" in answers(github)[0]
    ask(client, github, ".wcid")
    assert answers(github, 2)[1].startswith("**shop** (acme/shop) deploys to:")
    ask(client, github, ".deploy shop@main to staging")
    typo = answers(github, 3)[2]
    assert typo.startswith(":grey_question: write `.deploy [to ENV]`") and ".noop" in typo


def test_a_closed_pull_request_is_not_deployed(
    client: TestClient, github: FakeGitHub, starter: RecordingCreator
) -> None:
    github.add_pull_request("acme/shop", 7, HEAD_SHA, state="closed")
    ask(client, github, ".deploy to staging")
    assert answers(github) == ["Pull request #7 is closed: nothing was deployed."]
    assert starter.runs == []


# --------------------------------------------------------------------------- reading, text
def test_reading_needs_a_created_comment_with_a_pull_request(fake_github: FakeGitHub) -> None:
    fake_github.add_repo("acme/shop", refs={"main": BASE_SHA})
    fake_github.add_pull_request("acme/shop", 7, HEAD_SHA)
    import json

    payload = json.loads(comment_event(fake_github, "acme/shop", 7, "alice", ".noop to qa"))
    asked = read_comment(Delivery("issue_comment", "d", payload))
    assert (asked.repository, asked.number, asked.login) == ("acme/shop", 7, "alice")
    assert asked.command is not None and asked.command.action == "noop"
    assert asked.url == "https://github.com/acme/shop/pull/7"
    del payload["issue"]["pull_request"]
    with pytest.raises(Ignored, match="not on a pull request"):
        read_comment(Delivery("issue_comment", "d", payload))


def test_the_comment_shows_what_the_slack_card_shows_without_secrets() -> None:
    card = DeploySummary(
        "shop",
        "staging",
        "pull/7/head",
        hosts=["web-1"],
        steps=[Step("checkout", "done", 1.5), Step("build", "failed", 3.0), Step("upload")],
        requested_by="alice",
        sha=HEAD_SHA,
        run_url="http://127.0.0.1:4200/runs/flow-run/1",
        outcome="failure",
        error="mvn failed\ntoken ghp_abcdefghijklmnopqrstuvwxyz0123 leaked",
        pull_request_url="https://github.com/acme/shop/pull/7",
    )
    text = comment_markdown(card)
    assert text.startswith(":x: **Deploy failed:** `shop@pull/7/head (743f5a5) → staging`")
    assert f"Commit `{HEAD_SHA[:12]}`" in text
    run = "Run: [shop@\u200bpull/7/head \\(743f5a5\\) → staging](http://127.0.0.1:4200/runs/"
    assert run in text, "the title is shown as text: no @mention, no Markdown"
    assert "- :white_check_mark: checkout `1.5s`" in text
    assert "- :x: build _failed_" in text and "- :white_circle: upload" in text
    assert "mvn failed\ntoken [redacted] leaked" in text and "ghp_abc" not in text
    _, blocks = render_deploy_message(card)
    fields = [f["text"] for b in blocks if b["type"] == "section" for f in b.get("fields", [])]
    assert "*Asked on*\n<https://github.com/acme/shop/pull/7|pull request #7>" in fields


def test_chat_text_becomes_github_markdown() -> None:
    text = markdown(":lock: *staging* on <https://x.test/r/1|run 1> by <@U0ALICE001>")
    assert text == ":lock: **staging** on [run 1](https://x.test/r/1) by U0ALICE001"


def test_a_crashed_deploy_says_so_in_its_pull_request_comment(github: FakeGitHub) -> None:
    """The process that keeps the comment current died: the crash report edits it instead."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.report import report_crash

    @flow(name="deploy-stand-in")
    def stand_in() -> None: ...

    mine = github.add_comment("acme/shop", 7, github.login, "starting…")
    key = f"github-comment-test-{mine['id']}"
    parameters: dict[str, Any] = {
        "app": "shop",
        "environment": "staging",
        "ref": "pull/7/head",
        "sha": HEAD_SHA,
        "requested_by": "alice",
        "via": "github",
        "pull_request": {
            "repository": "acme/shop",
            "number": 7,
            "comment_id": mine["id"],
            "url": "https://github.com/acme/shop/pull/7",
        },
    }
    parameters["signature"] = sign(claims("deploy", parameters, key), signing_key())
    with get_client(sync_client=True) as client:
        made = client.create_flow_run(stand_in, parameters=parameters)
        # The gateway's runs carry their request key as Prefect's idempotency key.
        run = client.read_flow_run(made.id).model_copy(update={"idempotency_key": key})

    assert report_crash(run, "the runner was killed")

    [comment] = [c for c in github.comments("acme/shop", 7) if c["id"] == mine["id"]]
    assert comment["body"].startswith(":warning: Deploy ")
    assert "crashed: the runner was killed" in comment["body"]
    assert f"/runs/flow-run/{run.id}" in comment["body"]
