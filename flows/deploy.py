"""The deploy flow: one commit of one app, built once, shipped to every host of an environment.

Read :func:`deploy` top to bottom for the steps. Parameters are plain JSON, so any run can be
started again from the Prefect UI, and the front door (Slack, GitHub webhooks, the CLI) only has
to fill them in.
"""

from prefect import runtime

from adapters.pull_request import PullRequestComment
from blocks.github import configured_web_url
from flows.audiences import Notify
from flows.report import DeployReport
from flows.results import on_hosts
from flows.steps import check_hosts, go_live, hosts_flow, in_turn, record, recover_hosts
from flows.target import admit, load_target, vouch
from model.releases import Release
from model.summary import DeploySummary, run_title
from tasks.build import build
from tasks.git import checkout, remove_worktree
from tasks.hosts import run_task_command, upload

STEPS = [
    "record deployment",
    "checkout",
    "build",
    "check hosts",
    "upload",
    "activate",
    "health check",
]


def flow_run_name() -> str:
    p = runtime.flow_run.parameters
    return run_title(p["app"], p.get("ref") or "default", p.get("sha"), p["environment"])


@hosts_flow("deploy", flow_run_name)
def deploy(
    app: str,
    environment: str,
    ref: str | None = None,
    sha: str | None = None,
    deployment_id: int | None = None,
    requested_by: str = "",
    via: str = "ui",
    force: bool = False,
    hosts: list[str] | None = None,
    task: str = "deploy",
    notify: Notify | None = None,
    signature: str | None = None,
    pull_request: PullRequestComment | None = None,
) -> DeploySummary:
    """Deploy ``ref`` (or ``sha``) of ``app`` to ``environment``; return the deploy summary.

    ``deployment_id`` attaches to an existing GitHub deployment instead of creating one;
    ``requested_by`` and ``via`` (slack, cli, github, ui) say who asked and how: the
    environment's allow-lists and lock apply to them; ``force`` skips GitHub's required-checks
    gate (never a lock); ``hosts`` limits the deploy to some of the environment's hosts;
    ``task`` names a custom deploy task of the app; ``notify`` is where the Slack message goes;
    ``pull_request`` is the pull request comment that asked, kept up to date like the Slack
    message (a signed run's only).
    ``signature`` is the gateway's (:mod:`adapters.run_signing`): without a valid one, the run is
    a UI run by "prefect-ui", without force or ``deployment_id``.
    """
    asked = vouch(
        "deploy",
        {
            "app": app,
            "environment": environment,
            "ref": ref,
            "sha": sha,
            "deployment_id": deployment_id,
            "requested_by": requested_by,
            "via": via,
            "force": force,
            "hosts": hosts,
            "task": task,
            "notify": notify,
            "pull_request": pull_request,
        },
        signature,
    )
    requested_by, force = asked.requested_by, asked.force
    deployment_id = asked.deployment_id
    target = load_target(app, environment, hosts, task, ref)
    admit(target, asked)
    steps = STEPS if task == "deploy" else [*STEPS[:5], f"task {task}", *STEPS[5:]]
    again = {
        "app": app,
        "environment": environment,
        "ref": target.ref,
        "hosts": hosts,
        "task": task,
    }
    report = DeployReport(
        target,
        requested_by,
        notify,
        steps,
        deployment_id=deployment_id,
        again=again,
        pull_request=pull_request if asked.signed else None,
    )
    with in_turn(report, asked, notify):
        with report.step("record deployment"):
            recorded = record(
                report,
                target,
                sha or target.ref,
                task=task,
                force=force,
                requested_by=requested_by,
                deployment_id=deployment_id,
            )
            report.recorded(recorded)
        checks = check_hosts(target)  # every host is read while the commit is built
        with report.step("checkout"):
            tree = checkout(
                target.app.clone_url_on(configured_web_url()),
                target.ref,
                recorded.sha if recorded else sha,
            )
        release = Release.new(tree.sha)
        report.resolved(tree.sha, release.id)
        with report.step("build"):
            try:
                built = build(
                    tree.sha,
                    target.app.build_command,
                    target.app.artifact_glob,
                    tree.worktree,
                    target.app.build_env,
                    target.app.build_timeout,
                )
            finally:
                remove_worktree(tree)
            report.mark("build", "cached" if built.cached else "done")
        states = recover_hosts(report, target, checks)
        with report.step("upload"):
            on_hosts(
                "upload",
                {
                    h: upload.submit(target.environment, h, built.artifact, release)
                    for h in target.hosts
                },
            )
        if target.task_command:
            with report.step(f"task {task}"):
                run_task_command(target.environment, target.hosts[0], release, target.task_command)
        go_live(report, target, release, states)
    return report.summary
