"""The rollback flow: switch an environment back to a release its hosts already have.

No checkout, no build, no upload: the release folders are still on the hosts (see
``keep_releases``), so a rollback is a switch, a restart and a health check, batch by batch,
like the end of a deploy. Without a ref it goes back to the release before the current one.
"""

from typing import Any

from prefect import flow, runtime, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.report import DeployReport, run_title
from flows.serial import one_at_a_time
from flows.steps import record, results, roll_out
from flows.target import Target, UnknownTarget, load_target
from tasks.hosts import Release, list_releases

STEPS = ["find release", "record deployment", "activate", "health check"]
PREVIOUS = "previous release"


def flow_run_name() -> str:
    p = runtime.flow_run.parameters
    return run_title(p["app"], p.get("ref") or PREVIOUS, None, p["environment"])


@flow(
    name="rollback", flow_run_name=flow_run_name, task_runner=ThreadPoolTaskRunner(max_workers=16)
)
def rollback(
    app: str,
    environment: str,
    ref: str | None = None,
    requested_by: str = "",
    hosts: list[str] | None = None,
    notify: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Switch ``app`` in ``environment`` back to the release of ``ref`` (default: the previous).

    ``ref`` is a release id, a commit sha (or its start), or a ref whose commit was deployed
    there before.
    """
    target = load_target(app, environment, hosts, ref=ref or PREVIOUS)
    report = DeployReport(target, requested_by, notify, STEPS)
    with one_at_a_time(app, environment), report.running():
        with report.step("find release"):
            release = choose_release(target, ref)
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
        roll_out(report, target, release)
    return report.summary


def choose_release(target: Target, ref: str | None) -> Release:
    """The release to go back to; it must be complete on every host of the target."""
    listings = results(list_releases.map(unmapped(target.environment), target.hosts))
    common = set.intersection(*(set(found) for found, _ in listings))
    ordered = sorted(common, key=lambda r: r.id)
    live = listings[0][1]
    if ref is None:
        earlier = [r for r in ordered if live is None or r.id < live]
        if not earlier:
            raise UnknownTarget(
                f"{target.name} {target.environment_name} has no release before "
                f"{live or 'the current one'} on all its hosts"
            )
        return earlier[-1]
    matches = [
        r for r in ordered if ref in (r.id, r.sha) or (len(ref) >= 7 and r.sha.startswith(ref))
    ]
    if not matches:
        kept = ", ".join(r.id for r in ordered) or "none"
        raise UnknownTarget(
            f"no release of {ref!r} on every host of {target.name} "
            f"{target.environment_name}; releases kept there: {kept}"
        )
    return matches[-1]
