"""Notifications beyond Slack, end to end: real deploys and a rollback on the test bed tell a
signed JSON webhook and an e-mail address (a local SMTP server) each event, and a target that is
down costs the deploy nothing but a log line without secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from starlette.testclient import TestClient

from blocks.environment import Notification
from tests.fakes.github_api import FakeGitHub
from tests.gateway_support import (
    connect_fakes,
    gateway,
    post_cli,
    wait_for,
)
from tests.notification_sinks import Mailbox, Webhook, smtp_server, webhook
from tests.shop import save_shop, serving, wait_finished
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost

pytestmark = pytest.mark.e2e

SECRET = "notification-signing-key-" + "e2e"
DOWN_PATH = "services/T000/B000/a-path-that-is-a-secret"


def run_logs(run_ids: list[str]) -> list[str]:
    """Every log line of the runs, page by page."""
    found: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)),
                limit=200,
                offset=len(found),
            )
            found += [log.message for log in page]
            if len(page) < 200:
                return found


@dataclass
class Told:
    client: TestClient
    hosts: list[TestHost]
    repo: AppRepo
    hook: Webhook
    mail: Mailbox

    def run(self, text: str) -> str:
        """Ask for ``text`` from the terminal; the run's id once it is over."""
        answer = post_cli(self.client, text).json()
        assert answer["ok"], answer["text"]
        ticket = answer["ticket"]
        store = self.client.app.state.intake.store
        run_id = ticket["run_id"] or wait_for(lambda: store.ticket(ticket["id"]).run_id, 60)
        wait_finished(run_id)
        return run_id


@pytest.fixture
def told(
    served_flows: None,
    chatops_home: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
    fake_github: FakeGitHub,
) -> Iterator[Told]:
    connect_fakes(app_repo.path, fake_github)
    with webhook() as hook, smtp_server() as mail:
        Secret(value=SECRET).save("shop-staging-hook", overwrite=True)
        Secret(value=mail.url("qa@example.net")).save("shop-staging-mail", overwrite=True)
        targets = [
            Notification(webhook=hook.url, webhook_secret="shop-staging-hook"),
            Notification(
                webhook=f"http://127.0.0.1:9/{DOWN_PATH}", webhook_secret="shop-staging-hook"
            ),
            Notification(
                apprise_secret="shop-staging-mail", events=["succeeded", "failed", "rolled_back"]
            ),
            Notification(webhook=hook.url, webhook_secret="shop-staging-no-such-secret"),
        ]
        save_shop(app_repo, deploy_hosts, ssh_key, notifications=targets)
        with gateway() as client:
            yield Told(client, deploy_hosts, app_repo, hook, mail)


def test_deploys_and_a_rollback_tell_the_webhook_signed_json_and_e_mail_each_event(
    told: Told,
) -> None:
    repo = told.repo
    runs = [
        told.run("deploy shop@v1 to staging"),
        told.run("deploy shop@v2 to staging"),
        told.run("rollback shop in staging"),
        told.run("deploy shop@no-such-branch to staging"),
    ]
    for host in told.hosts:
        assert repo.v1 in serving(host), "the failed deploy changed nothing"

    events = []
    for delivery in told.hook.deliveries:
        mac = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["X-Chatops-Signature"] == f"sha256={mac}"
        events.append(json.loads(delivery.body))
    assert [(e["event"], e["action"], e["ref"]) for e in events] == [
        ("started", "deploy", "v1"),
        ("succeeded", "deploy", "v1"),
        ("started", "deploy", "v2"),
        ("succeeded", "deploy", "v2"),
        ("started", "rollback", "previous release"),
        ("rolled_back", "rollback", "previous release"),
        ("started", "deploy", "no-such-branch"),
        ("failed", "deploy", "no-such-branch"),
    ]
    first, rolled_back, failed = events[1], events[5], events[7]
    assert (first["sha"], first["app"], first["environment"]) == (repo.v1, "shop", "staging")
    assert first["requested_by"] == "alice" and first["outcome"] == "success"
    assert first["hosts"] == [h.address for h in told.hosts]
    assert first["run_url"].endswith(f"/runs/flow-run/{runs[0]}")
    assert rolled_back["sha"] == repo.v1 and rolled_back["run_url"].endswith(runs[2])
    assert "no-such-branch" in failed["error"] and failed["outcome"] == "failure"

    subjects = wait_for(lambda: len(told.mail.messages) == 4 and told.mail.subjects(), 30)
    assert subjects == [
        f"Deploy shop@v1 ({repo.v1[:7]}) → staging: succeeded",
        f"Deploy shop@v2 ({repo.v2[:7]}) → staging: succeeded",
        f"Rollback shop@previous release ({repo.v1[:7]}) → staging: rolled back",
        "Deploy shop@no-such-branch → staging: failed",
    ]
    assert all(to == ["qa@example.net"] for to in told.mail.recipients)

    down = (
        "Notification 2 (webhook to 127.0.0.1) of staging did not take '{}': "
        "ConnectionRefusedError; the deploy goes on"
    )
    refused = [down.format(e) for e in ("started", "succeeded", "rolled_back", "failed")]
    off = "Notification 4 is off: its Secret block 'shop-staging-no-such-secret' cannot be read"

    def every_line_arrived() -> bool:  # a run's last lines reach Prefect after its end does
        text = "\n".join(run_logs(runs))
        return all(line in text for line in refused) and text.count(off) == len(runs)

    with contextlib.suppress(AssertionError):
        wait_for(every_line_arrived, 30)
    text = "\n".join(run_logs(runs))
    for line in refused:
        assert line in text
    assert text.count(off) == len(runs)
    assert SECRET not in text and DOWN_PATH not in text
