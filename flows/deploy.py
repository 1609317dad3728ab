"""The deploy flow: one commit of one app, built once, shipped to every host of an environment.

Read :func:`deploy` top to bottom for the steps. Parameters are plain JSON, so any run can be
started again from the Prefect UI, and the front door (Slack, GitHub webhooks, the CLI) only has
to fill them in.
"""

from typing import Any

from prefect import flow, runtime, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.report import DeployReport, run_title
from flows.serial import one_at_a_time
from flows.steps import record, results, roll_out
from flows.target import load_target
from tasks.build import build
from tasks.git import checkout, remove_worktree
from tasks.hosts import Release, prune, run_task_command, upload

STEPS = ["record deployment", "checkout", "build", "upload", "activate", "health check"]


def flow_run_name() -> str:
    p = runtime.flow_run.parameters
    return run_title(p["app"], p.get("ref") or "default", p.get("sha"), p["environment"])


@flow(name="deploy", flow_run_name=flow_run_name, task_runner=ThreadPoolTaskRunner(max_workers=16))
def deploy(
    app: str,
    environment: str,
    ref: str | None = None,
    sha: str | None = None,
    deployment_id: int | None = None,
    requested_by: str = "",
    force: bool = False,
    hosts: list[str] | None = None,
    task: str = "deploy",
    notify: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Deploy ``ref`` (or ``sha``) of ``app`` to ``environment``; return the deploy summary.

    ``deployment_id`` attaches to an existing GitHub deployment instead of creating one;
    ``force`` skips GitHub's required-checks gate; ``hosts`` limits the deploy to some of the
    environment's hosts; ``task`` names a custom deploy task of the app; ``notify`` is
    ``{"channel": ..., "thread_ts": ...}`` for the Slack message.
    """
    target = load_target(app, environment, hosts, task, ref)
    steps = STEPS if task == "deploy" else [*STEPS[:4], f"task {task}", *STEPS[4:]]
    again = {
        "app": app,
        "environment": environment,
        "ref": target.ref,
        "hosts": hosts,
        "task": task,
    }
    report = DeployReport(target, requested_by, notify, steps, force_parameters=again)
    with one_at_a_time(app, environment), report.running():
        with report.step("record deployment"):
            report.recorded(
                record(
                    report,
                    target,
                    sha or target.ref,
                    task=task,
                    force=force,
                    requested_by=requested_by,
                    deployment_id=deployment_id,
                )
            )
        with report.step("checkout"):
            tree = checkout(
                target.app.default_clone_url,
                target.ref,
                report.deployment.sha if report.deployment else sha,
            )
        release = Release.new(tree.sha)
        report.resolved(tree.sha, release.id)
        with report.step("build"):
            try:
                built = build(
                    target.name,
                    tree.sha,
                    target.app.build_command,
                    target.app.artifact_glob,
                    tree.worktree,
                )
            finally:
                remove_worktree(tree)
            report.mark("build", "cached" if built.cached else "done")
        with report.step("upload"):
            results(
                upload.map(
                    unmapped(target.environment),
                    target.hosts,
                    unmapped(built.artifact),
                    unmapped(release),
                )
            )
        if target.task_command:
            with report.step(f"task {task}"):
                run_task_command(target.environment, target.hosts[0], release, target.task_command)
        roll_out(report, target, release)
        prune.map(unmapped(target.environment), target.hosts).wait()  # never fails a deploy
    return report.summary
