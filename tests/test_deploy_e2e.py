"""End to end: the deploy flow on real parts.

A real git repository of the example app, real offline ``mvn`` builds, two real OpenSSH hosts in
network namespaces running the app under Tomcat, a Prefect server, and the fake GitHub API that
PyGithub talks to over HTTP.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from blocks import App, Environment, GitHubAccess
from chatops.settings import paths
from flows.deploy import deploy
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost

pytestmark = pytest.mark.e2e
DEPLOY_PATH = "/srv/app"


@dataclass
class Shop:
    """The example app configured against the test bed: blocks saved, GitHub faked."""

    hosts: list[TestHost]
    repo: AppRepo
    github: object
    env: Environment

    def serving(self, host: TestHost) -> str:
        status, body = host.http_get("/demo/health")
        assert status == 200, body
        return body

    def current(self, host: TestHost) -> str:
        return (host.root / "current").readlink().name

    def save_env(self, **changes: object) -> None:
        self.env = self.env.model_copy(update=changes)
        self.env.save("shop-staging", overwrite=True)


def save_app(repo: AppRepo) -> None:
    App(repository="acme/shop", clone_url=repo.url, default_ref="main",
        default_environment="staging", environments=["staging"],
        tasks={"migrate": "echo migrating > ../../MIGRATED"}).save("shop", overwrite=True)


@pytest.fixture
def shop(prefect_server: None, chatops_home: Path, deploy_hosts: list[TestHost],
         app_repo: AppRepo, ssh_key: SshKey, fake_github) -> Iterator[Shop]:
    fake_github.add_repo("acme/shop", git_dir=app_repo.path)
    GitHubAccess(token=fake_github.token, api_url=fake_github.url).save("default",
                                                                        overwrite=True)
    save_app(app_repo)
    env = Environment(
        hosts=[h.address for h in deploy_hosts], ssh_user="root",
        ssh_private_key=ssh_key.private_text,
        known_hosts=[h.known_hosts_line for h in deploy_hosts],
        connect_timeout=3, command_timeout=60, deploy_path=DEPLOY_PATH,
        restart_command=f"{DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}",
        health_url="http://{host}:8080/demo/health", health_timeout=60, batch_size=1,
        keep_releases=3, url="https://staging.shop.example")
    env.save("shop-staging", overwrite=True)
    yield Shop(hosts=deploy_hosts, repo=app_repo, github=fake_github, env=env)
    assert fake_github.violations == []


def states(github, deployment_id: int) -> list[str]:
    return [status["state"] for status in github.statuses(deployment_id)]


def test_deploy_v1_then_v2_then_v1_again_without_building(shop: Shop) -> None:
    first = deploy(app="shop", environment="staging", ref="v1", requested_by="alice")
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)
        assert shop.current(host).endswith(shop.repo.v1[:7])
        assert (host.root / "current" / "REVISION").read_text().strip() == shop.repo.v1
    assert first["outcome"] == "success"
    assert first["title"] == f"shop@v1 ({shop.repo.v1[:7]}) → staging"
    assert states(shop.github, first["deployment_id"]) == ["in_progress", "success"]
    success = shop.github.statuses(first["deployment_id"])[-1]
    assert first["run_url"] and success["target_url"] == first["run_url"]
    assert success["environment_url"] == "https://staging.shop.example"

    second = deploy(app="shop", environment="staging", ref="main", requested_by="bob")
    for host in shop.hosts:
        assert shop.repo.v2 in shop.serving(host)
        assert len(list((host.root / "releases").iterdir())) == 2
    assert states(shop.github, second["deployment_id"]) == ["in_progress", "success"]
    assert states(shop.github, first["deployment_id"])[-1] == "inactive"
    assert shop.github.deployments[-1]["ref"] == "main"

    builds_before = sorted(p.name for p in (paths().artifacts / "shop").iterdir())
    third = deploy(app="shop", environment="staging", ref="v1", requested_by="carol")
    build_step = next(s for s in third["steps"] if s["name"] == "build")
    assert build_step["state"] == "cached"
    assert sorted(p.name for p in (paths().artifacts / "shop").iterdir()) == builds_before
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs()[0]
    assert {"app:shop", "env:staging"} <= set(run.tags)


def test_unhealthy_second_batch_rolls_every_host_back(shop: Shop) -> None:
    deploy(app="shop", environment="staging", ref="v1")
    healthy, sick = shop.hosts
    # The second host restarts fine on any release but v2, which then never becomes healthy.
    sick.run(f"mv {DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}/bin/real-restart && "
             f"printf '#!/bin/sh\\ngrep -q {shop.repo.v2} {DEPLOY_PATH}/current/REVISION && exit 0"
             f"\\nexec {DEPLOY_PATH}/bin/real-restart \"$@\"\\n' > {DEPLOY_PATH}/bin/restart-tomcat"
             f" && chmod +x {DEPLOY_PATH}/bin/restart-tomcat")
    shop.save_env(health_timeout=8)

    state = deploy(app="shop", environment="staging", ref="v2", return_state=True)

    assert state.is_failed()
    for host in shop.hosts:
        assert shop.current(host).endswith(shop.repo.v1[:7])
        assert shop.repo.v1 in shop.serving(host)
    deployment = shop.github.deployments[-1]
    assert states(shop.github, deployment["id"]) == ["in_progress", "failure"]
    assert "not healthy" in shop.github.statuses(deployment["id"])[-1]["description"]


def test_unreachable_host_fails_cleanly_and_switches_nothing(shop: Shop) -> None:
    deploy(app="shop", environment="staging", ref="v1")
    shop.hosts[1].link_down()
    started = time.monotonic()
    state = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    took = time.monotonic() - started
    assert state.is_failed()
    assert took < 60
    assert shop.current(shop.hosts[0]).endswith(shop.repo.v1[:7])
    assert shop.repo.v1 in shop.serving(shop.hosts[0])
    deployment = shop.github.deployments[-1]
    assert states(shop.github, deployment["id"]) == ["in_progress", "error"]


def test_custom_task_and_host_filter(shop: Shop) -> None:
    first, second = shop.hosts
    summary = deploy(app="shop", environment="staging", ref="v1", task="migrate",
                     hosts=[second.address])
    assert summary["hosts"] == [second.address]
    assert (second.root / "MIGRATED").read_text().strip() == "migrating"
    assert not (first.root / "current").exists()
    assert shop.repo.v1 in shop.serving(second)
