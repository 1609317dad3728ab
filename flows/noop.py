"""The dry run: every check a deploy makes, and what it would change, touching nothing.

``noop shop@feature-x to staging`` (Slack, ``chatops noop …``) starts it. It asks what a deploy
would ask, in the order a deploy asks it, and stops at nothing: who asks and whether the
environment takes them (allow-lists, its lock, a freeze), whether GitHub would take the
deployment (the commit's required statuses), whether every host answers and what it runs, how
much room each host has for the release, whether the commit is built already, and what each
host would change to. It records no GitHub deployment, posts nothing to Slack, builds nothing
and runs nothing on a host but reads (``df`` and the listing a deploy's check makes).

The answer is the table artifact ``plan-<app>-<environment>`` on the run (one row per check,
:func:`adapters.history.write_plan`), which the gateway turns into its reply.
"""

from pathlib import Path

from prefect import flow, runtime
from prefect.task_runners import ThreadPoolTaskRunner

from adapters import ssh
from adapters.history import write_plan
from blocks import GitHubAccess
from blocks.github import configured_web_url
from flows.audiences import Notify, load_optional
from flows.results import gather
from flows.target import Asked, admit, check_afresh, load_target, vouch
from model.errors import ChatopsError
from model.history import PlanCheck
from model.releases import HostState
from model.summary import run_title
from model.target import Target
from tasks.build import cache_dir, cached_artifact
from tasks.git import commits_apart, resolve, update_mirror
from tasks.github import blocking_checks
from tasks.hosts import free_space, inspect


def flow_run_name() -> str:
    p = runtime.flow_run.parameters
    title = run_title(p["app"], p.get("ref") or "default", None, p["environment"])
    return f"noop {title}"


@flow(name="noop", flow_run_name=flow_run_name, task_runner=ThreadPoolTaskRunner(16))
def noop(
    app: str,
    environment: str,
    ref: str | None = None,
    requested_by: str = "",
    via: str = "ui",
    hosts: list[str] | None = None,
    notify: Notify | None = None,
    signature: str | None = None,
) -> list[PlanCheck]:
    """What a deploy of ``ref`` of ``app`` to ``environment`` would find and change; the
    parameters mean what the deploy flow's do (``notify`` only says where it was asked)."""
    parameters = {"app": app, "environment": environment, "ref": ref, "hosts": hosts}
    asked = vouch(
        "noop",
        {**parameters, "requested_by": requested_by, "via": via, "notify": notify},
        signature,
    )
    target = load_target(app, environment, hosts, "deploy", ref)
    checks = [may_deploy(target, asked, notify)]
    mirror = update_mirror(target.app.clone_url_on(configured_web_url()))
    sha = resolve(mirror, target.ref)
    checks.append(PlanCheck("commit", None, f"{target.ref} is {sha[:12]}"))
    checks.append(required_checks(target, sha))
    checks.append(built(target, sha))
    with ssh.sessions():  # the host's check and its df share one connection
        checks += host_checks(target, sha, mirror)
    write_plan(app, target.environment_name, target.ref, checks)
    return checks


def may_deploy(target: Target, asked: Asked, notify: Notify | None) -> PlanCheck:
    """The allow-lists, the lock and a freeze, as the deploy asks them before it starts."""
    try:
        admit(target, asked)
        check_afresh(target, asked.requested_by, asked.via, notify.channel if notify else None)
    except ChatopsError as exc:
        return PlanCheck("allowed", False, str(exc))
    who = asked.requested_by
    return PlanCheck("allowed", True, f"{who} may deploy here; no lock or freeze stops it")


def required_checks(target: Target, sha: str) -> PlanCheck:
    """Whether GitHub would take the deployment: the commit's statuses it requires."""
    github: GitHubAccess | None = load_optional(GitHubAccess)
    if github is None:
        return PlanCheck("required checks", None, "GitHub is not configured: none are asked for")
    required = target.environment.required_contexts
    try:
        blocking = blocking_checks(github, target.app.repository, sha, required)
    except Exception as exc:  # GitHub down: the deploy would find out when it records
        return PlanCheck("required checks", None, f"GitHub could not be asked: {exc}")
    if blocking:
        failing = ", ".join(blocking)
        return PlanCheck("required checks", False, f"{failing}; a forced deploy (`!`) skips them")
    return PlanCheck("required checks", True, "every required status is green")


def built(target: Target, sha: str) -> PlanCheck:
    app = target.app
    artifact = cached_artifact(cache_dir(sha, app.build_command, app.artifact_glob))
    if artifact is None:
        return PlanCheck("build", None, "not built yet: the deploy builds it first")
    size = artifact.stat().st_size
    return PlanCheck("build", None, f"built already: {artifact.name} ({size / 1e6:.1f} MB)")


def host_checks(target: Target, sha: str, mirror: Path) -> list[PlanCheck]:
    """Every host: does it answer, what does it run, what would it run, and is there room."""
    states = gather({h: inspect.submit(target.environment, h) for h in target.hosts})
    room = gather({h: free_space.submit(target.environment, h) for h in target.hosts})
    checks = []
    for host in target.hosts:
        found, free = states[host], room[host]
        if isinstance(found, BaseException):
            checks.append(PlanCheck(f"host {host}", False, str(found)))
            continue
        state: HostState = found[0]
        current = state.releases.get(state.current or "")
        runs = f"runs {state.current} ({current[:7]})" if current else "runs nothing yet"
        space = f"{free / 1e9:.1f} GB free" if isinstance(free, int) else f"df failed: {free}"
        checks.append(PlanCheck(f"host {host}", isinstance(free, int), f"{runs}; {space}"))
        change = "no change" if current == sha else commits_between(mirror, current, sha)
        checks.append(PlanCheck(f"change {host}", None, change))
    return checks


def commits_between(mirror: Path, old: str | None, new: str) -> str:
    """``abc1234 → def5678: 3 commits added, 1 removed`` (counted in the app's mirror)."""
    if old is None:
        return f"nothing → {new[:7]}: a first deploy"
    try:
        added, removed = commits_apart(mirror, old, new)
    except ChatopsError:
        return f"{old[:7]} → {new[:7]} (the commit it runs is not in the repository)"
    return f"{old[:7]} → {new[:7]}: {added} commits added, {removed} removed"
