"""The deploy flow: one commit of one app, built once, shipped to every host of an environment.

Read :func:`deploy` top to bottom for the steps. Parameters are plain JSON, so any run can be
started again from the Prefect UI, and the front door (Slack, GitHub webhooks, the CLI) only has
to fill them in.
"""

from collections.abc import Iterator
from typing import Any

from prefect import flow, runtime, unmapped
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.transactions import transaction

from flows.report import DeployReport, run_title
from flows.target import Target, UnknownTarget, load_target
from tasks.build import BuildFailed, build
from tasks.git import UnknownRef, checkout, remove_worktree
from tasks.github import PAYLOAD_MARK, DeploymentRefused, GitHubDeployment, record_deployment
from tasks.health import Unhealthy, health_check
from tasks.hosts import Release, activate, prune, run_task_command, upload

FAILURES = (UnknownTarget, UnknownRef, DeploymentRefused, BuildFailed, Unhealthy)
"""Errors that mean "this deploy cannot work" (GitHub state ``failure``); others are ``error``."""


def flow_run_name() -> str:
    p = runtime.flow_run.parameters
    return run_title(p["app"], p.get("ref") or "default", p.get("sha"), p["environment"])


@flow(name="deploy", flow_run_name=flow_run_name, task_runner=ThreadPoolTaskRunner(max_workers=16))
def deploy(app: str, environment: str, ref: str | None = None, sha: str | None = None,
           deployment_id: int | None = None, requested_by: str = "", force: bool = False,
           hosts: list[str] | None = None, task: str = "deploy",
           notify: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deploy ``ref`` (or ``sha``) of ``app`` to ``environment``; return the deploy summary.

    ``deployment_id`` attaches to an existing GitHub deployment instead of creating one;
    ``force`` skips GitHub's required-checks gate; ``hosts`` limits the deploy to some of the
    environment's hosts; ``task`` names a custom deploy task of the app; ``notify`` is
    ``{"channel": ..., "thread_ts": ...}`` for the Slack message.
    """
    target = load_target(app, environment, hosts, task, ref)
    report = DeployReport(target, requested_by, notify, task)
    try:
        with report.step("record deployment"):
            report.recorded(record(report, target, sha, deployment_id, force, task, requested_by))
        with report.step("checkout"):
            tree = checkout(target.app.default_clone_url, target.ref,
                            report.deployment.sha if report.deployment else sha)
        release = Release.new(tree.sha)
        report.resolved(tree.sha, release.id)
        with report.step("build"):
            try:
                built = build(target.name, tree.sha, target.app.build_command,
                              target.app.artifact_glob, tree.worktree)
            finally:
                remove_worktree(tree)
            report.mark("build", "cached" if built.cached else "done")
        with report.step("upload"):
            results(upload.map(unmapped(target.environment), target.hosts,
                               unmapped(built.artifact), unmapped(release)))
        if target.task_command:
            with report.step(f"task {task}"):
                run_task_command(target.environment, target.hosts[0], release, target.task_command)
        roll_out(report, target, release)
    except FAILURES as exc:
        report.failed("failure", describe(exc))
        raise
    except Exception as exc:
        report.failed("error", describe(exc))
        raise
    report.succeeded()
    prune.map(unmapped(target.environment), target.hosts).wait()
    return report.summary


def record(report: DeployReport, target: Target, sha: str | None, deployment_id: int | None,
           force: bool, task: str, requested_by: str) -> GitHubDeployment | None:
    """Create (or attach to) the GitHub deployment; None when GitHub reporting is off."""
    if report.github is None:
        return None
    payload = {PAYLOAD_MARK: {"flow_run_id": str(runtime.flow_run.id),
                              "requested_by": requested_by}}
    return record_deployment(
        report.github, target.app.repository, sha or target.ref, target.environment_name,
        task_name=task, payload=payload, description=f"{requested_by or 'chatops'} via chatops",
        required_contexts=[] if force else target.environment.required_contexts,
        production=target.environment.production, deployment_id=deployment_id)


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
                    results(health_check.map(unmapped(env.health_url), batch,
                                             unmapped(release.sha), unmapped(env.health_timeout)))
    if not env.health_url:
        report.mark("health check", "skipped")


def batches(hosts: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(hosts), size):
        yield hosts[start:start + size]


def results(futures: list[PrefectFuture]) -> list[Any]:
    """Wait for every future, then raise the first failure (so no task is left running)."""
    for future in futures:
        future.wait()
    return [future.result() for future in futures]


def describe(exc: BaseException) -> str:
    """A short account of a failure for people; a failed build includes its last lines."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BuildFailed) and exc.tail:
        text += "\n" + "\n".join(exc.tail)
    return text
