"""End to end: the deploy flow on real parts.

A real git repository of the example app, real offline ``mvn`` builds, two real OpenSSH hosts in
network namespaces running the app under Tomcat, a Prefect server, and the fake GitHub API that
PyGithub talks to over HTTP.
"""

import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.deployments import run_deployment

from adapters import history
from adapters.home import home
from blocks import GitHubAccess, SlackAccess
from flows.deploy import deploy
from flows.rollback import rollback
from tests.shop import DEPLOY_PATH, Shop, states, wait_finished
from tests.signed import as_gateway
from tests.testbed.hosts import SshKey

pytestmark = pytest.mark.e2e


def test_deploy_v1_then_v2_then_v1_again_without_building(shop: Shop) -> None:
    first = as_gateway(deploy, app="shop", environment="staging", ref="v1", requested_by="alice")
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)
        assert shop.current(host).endswith(shop.repo.v1[:7])
        assert (host.root / "current" / "REVISION").read_text().strip() == shop.repo.v1
    assert first.outcome == "success"
    assert first.title == f"shop@v1 ({shop.repo.v1[:7]}) → staging"
    assert states(shop.github, first.deployment_id) == ["in_progress", "success"]
    success = shop.github.statuses(first.deployment_id)[-1]
    assert first.run_url and success["target_url"] == first.run_url
    assert success["environment_url"] == "https://staging.shop.example"

    second = as_gateway(deploy, app="shop", environment="staging", ref="main", requested_by="bob")
    for host in shop.hosts:
        assert shop.repo.v2 in shop.serving(host)
        assert len(list((host.root / "releases").iterdir())) == 2
        history_lines = (host.root / "HISTORY").read_text().splitlines()
        assert [line.split()[1] for line in history_lines] == [first.release, second.release]
        assert not (host.root / "SWITCHING").exists()
    assert states(shop.github, second.deployment_id) == ["in_progress", "success"]
    assert states(shop.github, first.deployment_id)[-1] == "inactive"
    assert shop.github.deployments[-1]["ref"] == "main"

    builds_before = sorted(home().artifacts.iterdir())
    third = as_gateway(deploy, app="shop", environment="staging", ref="v1", requested_by="carol")
    assert third.step("build").state == "cached"
    assert sorted(home().artifacts.iterdir()) == builds_before
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)

    assert third.run_url
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(third.run_url.rsplit("/", 1)[-1])
    assert {"app:shop", "env:staging"} <= set(run.tags)


def test_unhealthy_second_batch_rolls_every_host_back(shop: Shop) -> None:
    deploy(app="shop", environment="staging", ref="v1")
    healthy, sick = shop.hosts
    # The second host restarts fine on any release but v2, which then never becomes healthy.
    sick.run(
        f"mv {DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}/bin/real-restart && "
        f"printf '#!/bin/sh\\ngrep -q {shop.repo.v2} {DEPLOY_PATH}/current/REVISION && exit 0"
        f'\\nexec {DEPLOY_PATH}/bin/real-restart "$@"\\n\' > {DEPLOY_PATH}/bin/restart-tomcat'
        f" && chmod +x {DEPLOY_PATH}/bin/restart-tomcat"
    )
    shop.save_env(health_timeout=8)

    started = time.monotonic()
    state = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    print(
        f"measured: an unhealthy host (health_timeout 8 s) failed and rolled back the deploy "
        f"in {time.monotonic() - started:.1f} s"
    )

    assert state.is_failed()
    for host in shop.hosts:
        assert shop.current(host).endswith(shop.repo.v1[:7])
        assert shop.repo.v1 in shop.serving(host)
    deployment = shop.github.deployments[-1]
    assert states(shop.github, deployment["id"]) == ["in_progress", "failure"]
    description = shop.github.statuses(deployment["id"])[-1]["description"]
    assert f"health check failed on {sick.address} (1 of 1 hosts): not serving" in description


def test_unreachable_host_fails_cleanly_and_switches_nothing(shop: Shop) -> None:
    deploy(app="shop", environment="staging", ref="v1")
    shop.hosts[1].link_down()
    started = time.monotonic()
    state = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    took = time.monotonic() - started
    print(f"measured: an unreachable host (connect_timeout 3 s) failed the deploy in {took:.1f} s")
    assert state.is_failed()
    assert took < 60
    assert shop.current(shop.hosts[0]).endswith(shop.repo.v1[:7])
    assert shop.repo.v1 in shop.serving(shop.hosts[0])
    deployment = shop.github.deployments[-1]
    assert states(shop.github, deployment["id"]) == ["in_progress", "error"]


def test_custom_task_and_host_filter(shop: Shop) -> None:
    first, second = shop.hosts
    summary = deploy(
        app="shop", environment="staging", ref="v1", task="migrate", hosts=[second.address]
    )
    assert summary.hosts == [second.address]
    assert (second.root / "MIGRATED").read_text().strip() == "migrating"
    assert not (first.root / "current").exists()
    assert shop.repo.v1 in shop.serving(second)


def test_rollback_switches_back_without_building(shop: Shop) -> None:
    deploy(app="shop", environment="staging", ref="v1")
    deploy(app="shop", environment="staging", ref="v2")

    back = as_gateway(rollback, app="shop", environment="staging", requested_by="dave")
    assert [s.name for s in back.steps] == [
        "check hosts",
        "find release",
        "record deployment",
        "activate",
        "health check",
    ]
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)
    rolled = shop.github.deployments[-1]
    assert rolled["task"] == "rollback" and rolled["sha"] == shop.repo.v1
    assert states(shop.github, rolled["id"]) == ["in_progress", "success"]

    forward = rollback(app="shop", environment="staging", ref=shop.repo.v2[:7])
    assert forward.sha == shop.repo.v2
    for host in shop.hosts:
        assert shop.repo.v2 in shop.serving(host)

    by_tag = rollback(app="shop", environment="staging", ref="v1")  # what people type
    assert by_tag.sha == shop.repo.v1
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)

    state = rollback(app="shop", environment="staging", ref="0badc0de", return_state=True)
    assert state.is_failed()
    assert "releases kept there" in str(state.message) or "releases kept there" in repr(
        state.result(raise_on_failure=False)
    )


def test_deploys_of_one_environment_take_turns(shop: Shop, served_flows: None) -> None:
    params = {"app": "shop", "environment": "staging"}
    runs = [
        run_deployment("deploy/chatops", parameters={**params, "ref": ref}, timeout=0)
        for ref in ("v1", "v2")
    ]
    finished = [wait_finished(run.id) for run in runs]
    assert all(run.state.is_completed() for run in finished)
    with get_client(sync_client=True) as client:
        spans = []
        for run in runs:
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            spans.append(
                (
                    min(t.start_time for t in tasks if t.start_time),
                    max(t.end_time for t in tasks if t.end_time),
                )
            )
    first, second = sorted(spans)
    assert first[1] <= second[0], "the two deploys overlapped"


def run_logs(run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
        )
    return [log.message for log in logs]


def test_without_github_it_still_deploys_and_says_so_once(shop: Shop) -> None:
    GitHubAccess.delete("default")
    state = deploy(app="shop", environment="staging", ref="v1", return_state=True)
    assert state.is_completed()
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)
    notes = [m for m in run_logs(state.state_details.flow_run_id) if "GitHub reporting is off" in m]
    assert len(notes) == 1
    assert shop.github.deployments == []


def test_failing_checks_stop_the_deploy_before_anything_is_built(shop: Shop) -> None:
    shop.github.set_commit_statuses("acme/shop", shop.repo.v2, {"ci/test": "failure"})
    state = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    assert state.is_failed()
    assert "ci/test (failure)" in state.message
    assert shop.github.deployments == []
    assert not list(home().artifacts.glob(f"{shop.repo.v2}-*"))
    assert not any((h.root / "releases").exists() for h in shop.hosts)

    forced = as_gateway(deploy, app="shop", environment="staging", ref="v2", force=True)
    assert forced.outcome == "success"


def test_what_is_deployed_where_and_no_secret_leaks(shop: Shop, ssh_key: SshKey) -> None:
    done = as_gateway(
        deploy, app="shop", environment="staging", ref="feature/login", requested_by="frank"
    )
    [entry] = [
        d for d in history.deployed_everywhere() if (d.app, d.environment) == ("shop", "staging")
    ]
    assert (entry.sha, entry.ref, entry.requested_by) == (shop.repo.v2, "feature/login", "frank")
    assert entry.release == done.release and entry.hosts == [h.address for h in shop.hosts]
    assert entry.commit_url and entry.commit_url.endswith(f"/commit/{shop.repo.v2}")

    shop.hosts[0].drop_ssh()
    failed = deploy(app="shop", environment="staging", ref="v1", return_state=True)
    assert failed.is_failed()

    secrets = [shop.github.token, *ssh_key.private_text.strip().splitlines()[1:-1]]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
        texts = [str(a.data) for a in artifacts]
    for run_id in (done.run_url.rsplit("/", 1)[-1], failed.state_details.flow_run_id):
        texts += run_logs(run_id)
    for deployment in shop.github.deployments:
        texts += [str(s) for s in shop.github.statuses(deployment["id"])]
    texts.append(str(failed.message))
    leaked = [t for t in texts for secret in secrets if secret in t]
    assert leaked == []
    report = next(
        a
        for a in artifacts
        if a.flow_run_id == failed.state_details.flow_run_id and a.type == "markdown"
    )
    assert "error" in str(report.data) and "What went wrong" in str(report.data)


def test_slack_message_follows_the_deploy(shop: Shop, fake_slack) -> None:
    SlackAccess(bot_token=fake_slack.token, api_url=fake_slack.api_url).save(
        "default", overwrite=True
    )
    try:
        done = as_gateway(
            deploy,
            app="shop",
            environment="staging",
            ref="v1",
            requested_by="U0ALICE001",
            notify={"channel": "C0DEPLOYS01"},
        )
        [message] = fake_slack.top_level("C0DEPLOYS01")
        assert message.updates >= 5, "the card is updated as steps finish"
        assert "success" in message.text and done.title in str(message.blocks)
        assert "rollback" in str(message.blocks)

        shop.github.set_commit_statuses("acme/shop", shop.repo.v2, {"ci/test": "failure"})
        state = deploy(
            app="shop",
            environment="staging",
            ref="v2",
            return_state=True,
            notify={"channel": "C0DEPLOYS01"},
        )
        assert state.is_failed()
        refused = fake_slack.top_level("C0DEPLOYS01")[-1]
        assert "deploy_anyway" in str(refused.blocks) and "ci/test (failure)" in str(refused.blocks)
        assert fake_slack.replies("C0DEPLOYS01", refused.ts), "the excerpt goes to the thread"
        assert fake_slack.violations == []
    finally:
        SlackAccess.delete("default")


def card_fields(fake_slack) -> list[str]:
    """The summary fields of the newest deploy card in the deploys channel, as last updated."""
    card = fake_slack.top_level("C0DEPLOYS01")[-1]
    section = next(b for b in card.blocks if b.get("block_id") == "deploy_summary")
    return [field["text"] for field in section["fields"]]


def test_the_card_says_what_the_deploy_changes(shop: Shop, fake_slack) -> None:
    SlackAccess(bot_token=fake_slack.token, api_url=fake_slack.api_url).save(
        "default", overwrite=True
    )
    v1, v2 = shop.repo.v1, shop.repo.v2
    compare = "https://github.com/acme/shop/compare"
    notify = {"channel": "C0DEPLOYS01"}
    try:
        assert history.deployed_on("shop", "nowhere") is None  # a first deploy there
        as_gateway(deploy, app="shop", environment="staging", ref="v1", notify=notify)
        forward = as_gateway(deploy, app="shop", environment="staging", ref="v2", notify=notify)
        assert forward.outcome == "success"
        assert f"*Changes*\n1 commit added (<{compare}/{v1}...{v2}|compare>)" in card_fields(
            fake_slack
        )

        back = as_gateway(rollback, app="shop", environment="staging", notify=notify)
        assert back.outcome == "success" and back.sha == v1
        assert f"*Changes*\n1 commit removed (<{compare}/{v2}...{v1}|compare>)" in card_fields(
            fake_slack
        )

        GitHubAccess.delete("default")  # no GitHub: the app's mirror counts, with no link
        as_gateway(deploy, app="shop", environment="staging", ref="v2", notify=notify)
        assert "*Changes*\n1 commit added" in card_fields(fake_slack)
        assert fake_slack.violations == []
    finally:
        SlackAccess.delete("default")
