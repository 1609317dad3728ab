"""The example app, configured as "shop" on the test bed: its blocks, its health, its runs.

The ``shop`` fixture (tests/conftest.py) gives a :class:`Shop`: hosts, repository, the fake
GitHub API and the saved Environment.
"""

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from blocks import App, Environment
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost

DEPLOY_PATH = "/srv/app"


def save_shop(
    repo: AppRepo, hosts: list[TestHost], ssh_key: SshKey, **environment: Any
) -> Environment:
    """Save the ``shop`` App and its ``staging`` Environment (``environment`` overrides fields)."""
    App(
        repository="acme/shop",
        clone_url=repo.url,
        default_ref="main",
        default_environment="staging",
        environments=["staging"],
        tasks={"migrate": "echo migrating > ../../MIGRATED"},
    ).save("shop", overwrite=True)
    settings: dict[str, Any] = dict(
        hosts=[h.address for h in hosts],
        ssh_user="root",
        ssh_private_key=ssh_key.private_text,
        known_hosts=[h.known_hosts_line for h in hosts],
        connect_timeout=3,
        command_timeout=60,
        deploy_path=DEPLOY_PATH,
        restart_command=f"{DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}",
        health_url="http://{host}:8080/demo/health",
        health_timeout=60,
        batch_size=1,
        keep_releases=3,
        url="https://staging.shop.example",
    )
    env = Environment(**{**settings, **environment})
    env.save("shop-staging", overwrite=True)
    return env


def serving(host: TestHost) -> str:
    """What the host's app answers on its health URL (it must answer 200)."""
    status, body = host.http_get("/demo/health")
    assert status == 200, body
    return body


def wait_finished(run_id: UUID | str, seconds: float = 240) -> FlowRun:
    """The flow run once it is over; fails the test if that takes longer than ``seconds``."""
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} did not finish in {seconds} s")


@dataclass
class Shop:
    """The example app configured against the test bed: blocks saved, GitHub faked."""

    hosts: list[TestHost]
    repo: AppRepo
    github: Any
    env: Environment

    def serving(self, host: TestHost) -> str:
        return serving(host)

    def current(self, host: TestHost) -> str:
        return (host.root / "current").readlink().name

    def save_env(self, **changes: object) -> None:
        self.env = self.env.model_copy(update=changes)
        self.env.save("shop-staging", overwrite=True)


def states(github: Any, deployment_id: int) -> list[str]:
    """The states GitHub was told for one deployment, oldest first."""
    return [status["state"] for status in github.statuses(deployment_id)]
