"""Steps the deploy and rollback flows share: recording on GitHub and the rolling switch."""

from collections.abc import Iterator
from typing import Any

from prefect import runtime, unmapped
from prefect.futures import PrefectFuture
from prefect.transactions import transaction

from flows.report import DeployReport
from flows.target import Target
from tasks.github import PAYLOAD_MARK, GitHubDeployment, record_deployment
from tasks.health import health_check
from tasks.hosts import Release, activate


def record(
    report: DeployReport,
    target: Target,
    ref: str,
    *,
    task: str,
    force: bool,
    requested_by: str,
    deployment_id: int | None = None,
) -> GitHubDeployment | None:
    """Create (or attach to) the GitHub deployment; None when GitHub reporting is off.

    The deployment's payload carries our mark, so its ``deployment`` webhook starts nothing.
    """
    if report.github is None:
        return None
    payload = {
        PAYLOAD_MARK: {"flow_run_id": str(runtime.flow_run.id), "requested_by": requested_by}
    }
    return record_deployment(
        report.github,
        target.app.repository,
        ref,
        target.environment_name,
        task_name=task,
        payload=payload,
        description=f"{requested_by or 'chatops'} via chatops",
        required_contexts=[] if force else target.environment.required_contexts,
        production=target.environment.production,
        deployment_id=deployment_id,
    )


def roll_out(report: DeployReport, target: Target, release: Release) -> None:
    """Switch, restart and health-check the hosts batch by batch.

    All of it is one transaction: when any batch fails, every host switched so far (this batch
    and the earlier ones) is switched back to its previous release and restarted.
    """
    env = target.environment
    with transaction():
        for batch in batches(target.hosts, env.batch_size):
            with report.step("activate"):
                results(activate.map(unmapped(env), batch, unmapped(release)))
            if env.health_url:
                with report.step("health check"):
                    results(
                        health_check.map(
                            unmapped(env.health_url),
                            batch,
                            unmapped(release.sha),
                            unmapped(env.health_timeout),
                        )
                    )
    if not env.health_url:
        report.mark("health check", "skipped")


def batches(hosts: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(hosts), size):
        yield hosts[start : start + size]


def results(futures: list[PrefectFuture]) -> list[Any]:
    """Wait for every future, then raise the first failure (so no task is left running)."""
    for future in futures:
        future.wait()
    return [future.result() for future in futures]
