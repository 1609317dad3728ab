"""The rollback flow: switch an environment back to a release its hosts already have.

No checkout, no build, no upload: the release folders are still on the hosts (see
``keep_releases``), so a rollback is a switch, a restart and a health check, batch by batch,
like the end of a deploy. Without a ref it goes back to the release that ran successfully
before the current one, as every host's HISTORY records it, never just the newest folder.

``rollback shop in production to v1.4.2`` names a release by what people remember: a release id,
a commit sha (4 hex digits or more), or a tag or branch, which the app's git mirror resolves to a
commit. If that commit's release is no longer on every host (pruned, or never deployed there),
the run says so and how to deploy it instead.
"""

import re
from collections.abc import Callable

from prefect import runtime

from blocks import UnknownTarget
from blocks.github import configured_web_url
from flows.audiences import Notify
from flows.report import DeployReport
from flows.steps import check_hosts, go_live, hosts_flow, in_turn, record, recover_hosts
from flows.target import admit, load_target, vouch
from model.releases import HostState, Release
from model.summary import PREVIOUS, DeploySummary, run_title
from model.target import Target
from tasks.git import UnknownRef, resolve_ref

STEPS = ["check hosts", "find release", "record deployment", "activate", "health check"]


def flow_run_name() -> str:
    p = runtime.flow_run.parameters
    return run_title(p["app"], p.get("ref") or PREVIOUS, None, p["environment"])


@hosts_flow("rollback", flow_run_name)
def rollback(
    app: str,
    environment: str,
    ref: str | None = None,
    requested_by: str = "",
    via: str = "ui",
    force: bool = False,
    hosts: list[str] | None = None,
    notify: Notify | None = None,
    signature: str | None = None,
) -> DeploySummary:
    """Switch ``app`` in ``environment`` back to the release of ``ref`` (default: the previous).

    ``ref`` is a release id, a commit sha (or its start), or a ref whose commit was deployed
    there before. ``requested_by``, ``via``, ``force`` and ``signature`` work as for a deploy.
    """
    asked = vouch(
        "rollback",
        {
            "app": app,
            "environment": environment,
            "ref": ref,
            "requested_by": requested_by,
            "via": via,
            "force": force,
            "hosts": hosts,
            "notify": notify,
        },
        signature,
    )
    requested_by = asked.requested_by
    target = load_target(app, environment, hosts, ref=ref or PREVIOUS)
    admit(target, asked)
    report = DeployReport(target, requested_by, notify, STEPS, action="rollback")
    with in_turn(report, asked, notify, rollback=True):
        states = recover_hosts(report, target, check_hosts(target))
        with report.step("find release"):
            release = choose_release(
                target,
                ref,
                [states[h] for h in target.hosts],
                lambda name: resolve_ref(target.app.clone_url_on(configured_web_url()), name),
            )
        report.resolved(release.sha, release.id)
        with report.step("record deployment"):
            report.recorded(
                record(
                    report,
                    target,
                    release.sha,
                    task="rollback",
                    force=True,
                    requested_by=requested_by,
                )
            )
        go_live(report, target, release, states)
    return report.summary


def choose_release(
    target: Target,
    ref: str | None,
    states: list[HostState],
    resolve: Callable[[str], str] | None = None,
) -> Release:
    """The release to go back to; it must be complete on every host of the target.

    Without ``ref``: the release that ran successfully before the current good one (each host's
    HISTORY), which every host still has. With ``ref``: the release with that id, or of the
    commit it names: a sha or its start, else what ``resolve`` makes of it (a tag or branch).
    """
    common = set.intersection(*(set(s.releases) for s in states))
    releases = {rid: states[0].releases[rid] for rid in common}
    kept = ", ".join(sorted(common)) or "none"
    where = f"{target.app_name} {target.environment_name}"
    if ref is None:
        wanted = {s.previous_good for s in states}
        if len(wanted) == 1 and (previous := wanted.pop()) in releases:
            return Release(previous, releases[previous])
        good = ", ".join(sorted({str(s.good) for s in states}))
        raise UnknownTarget(
            f"{where} has no release that ran before {good} on all its hosts; "
            f"releases kept on all of them: {kept}"
        )
    if ref in releases:
        return Release(ref, releases[ref])
    matches = _releases_of(releases, ref) if _SHORT_SHA.fullmatch(ref) else {}
    if not matches and resolve is not None:
        try:
            sha = resolve(ref)
        except UnknownRef:
            sha = None
        if sha is not None:
            matches = _releases_of(releases, sha)
            if not matches:
                raise UnknownTarget(
                    f"{ref!r} is commit {sha[:7]}, but its release is no longer on every host of "
                    f"{where} (pruned, or never deployed there); releases kept there: {kept}. "
                    f"To deploy it instead: `deploy {target.app_name}@{ref} to "
                    f"{target.environment_name}`"
                )
    if not matches:
        raise UnknownTarget(
            f"no release of {ref!r} on every host of {where}; releases kept there: {kept}"
        )
    shas = set(matches.values())
    if len(shas) > 1:
        raise UnknownTarget(
            f"{ref!r} is the start of several deployed commits ({', '.join(sorted(shas))}): "
            "give more of the sha"
        )
    newest = max(matches)
    return Release(newest, matches[newest])


_SHORT_SHA = re.compile(r"[0-9a-f]{4,40}")


def _releases_of(releases: dict[str, str], sha: str) -> dict[str, str]:
    """The releases (id → sha) of the commit ``sha`` names (a full sha or its start)."""
    return {rid: full for rid, full in releases.items() if full.startswith(sha)}
