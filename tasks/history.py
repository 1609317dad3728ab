"""Deploy history in Prefect: what each run did, what is deployed where, and recent runs.

Two Markdown artifacts are written per deploy:

- on the run itself, the deploy report: who asked, which ref and sha, where, which hosts, how
  long each step took and, for a failed deploy, the failure excerpt;
- under the key ``deployed-<app>-<environment>``, after every successful deploy, the release
  that now runs there. The Prefect UI's Artifacts page lists one per app environment, with its
  history; :func:`deployed_everywhere` reads the latest of each (the facts ride along in an
  HTML comment, so nothing parses the prose).

Runs are tagged ``app:<app>`` and ``env:<environment>`` (:func:`tasks.summary.run_tags`);
:func:`recent_runs` lists them newest first.
"""

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from uuid import UUID

from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.sorting import ArtifactCollectionSort, ArtifactSort, FlowRunSort
from prefect.utilities.urls import url_for

from tasks.summary import PREVIOUS, DeploySummary, run_tags

DEPLOYED_PREFIX = "deployed-"
_FACTS = re.compile(r"<!-- chatops:deployed (\{.*\}) -->")


@dataclass(frozen=True)
class Deployed:
    """The latest successful deploy of one app environment, as its Prefect artifact says."""

    app: str
    environment: str
    ref: str
    sha: str
    release: str
    hosts: list[str]
    requested_by: str
    finished: str
    run_url: str | None = None


@dataclass(frozen=True)
class RecentRun:
    """One deploy or rollback run of an app, as the ``deploys`` command lists it."""

    name: str
    state: str
    ref: str | None
    requested_by: str | None
    when: datetime | None
    url: str


def deployed_key(app: str, environment: str) -> str:
    return f"{DEPLOYED_PREFIX}{app}-{environment}"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ") if value not in (None, "") else "–"


def report_markdown(summary: DeploySummary) -> str:
    """The deploy report of one run, as Markdown."""
    rows = [
        ("outcome", f"**{_cell(summary.outcome)}**"),
        ("requested by", _cell(summary.requested_by)),
        ("ref", f"`{_cell(summary.ref)}`"),
        ("sha", f"`{_cell(summary.sha)}`"),
        ("environment", _cell(summary.environment)),
        ("hosts", _cell(", ".join(summary.hosts))),
        ("release", f"`{_cell(summary.release)}`"),
        ("GitHub deployment", _cell(summary.deployment_id)),
    ]
    lines = [f"# {summary.title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "| step | state | seconds |", "|---|---|---|"]
    for step in summary.steps:
        seconds = f"{step.seconds:.1f}" if step.seconds is not None else "–"
        lines.append(f"| {step.name} | {step.state} | {seconds} |")
    if summary.error:
        lines += ["", "## What went wrong", "", "```", summary.error, "```"]
    return "\n".join(lines)


def deployed_markdown(deployed: Deployed) -> str:
    """What now runs in one app environment, as Markdown (with its facts for machines)."""
    return "\n".join(
        [
            f"**{deployed.app}** on **{deployed.environment}**: "
            f"`{_cell(deployed.ref)}` at `{_cell(deployed.sha)}`",
            "",
            f"- release `{_cell(deployed.release)}` on {_cell(', '.join(deployed.hosts))}",
            f"- deployed by {_cell(deployed.requested_by)} at {_cell(deployed.finished)}",
            f"- run: {_cell(deployed.run_url)}",
            "",
            f"<!-- chatops:deployed {json.dumps(asdict(deployed))} -->",
        ]
    )


def write_report(summary: DeploySummary) -> None:
    """Attach the deploy report to the current run."""
    create_markdown_artifact(
        markdown=report_markdown(summary), description=f"Deploy report: {summary.title}"
    )


def write_deployed(summary: DeploySummary) -> None:
    """Record that this run's release now runs in its app environment.

    A rollback to the previous release records the ref that release was deployed from, so
    ``status`` keeps answering "which branch runs there?".
    """
    ref = summary.ref
    if ref == PREVIOUS and summary.sha:
        ref = earlier_ref(summary.app, summary.environment, summary.sha) or ref
    deployed = Deployed(
        app=summary.app,
        environment=summary.environment,
        ref=ref,
        sha=summary.sha or "",
        release=summary.release or "",
        hosts=summary.hosts,
        requested_by=summary.requested_by,
        finished=summary.finished or "",
        run_url=summary.run_url,
    )
    create_markdown_artifact(
        key=deployed_key(summary.app, summary.environment),
        markdown=deployed_markdown(deployed),
        description=f"What is deployed on {summary.app} {summary.environment}",
    )


def runs_that_deployed(run_ids: set[str]) -> set[str]:
    """Which of ``run_ids`` wrote a ``deployed-*`` record: those runs succeeded on every host,
    whatever became of their process afterwards (:meth:`flows.report.DeployReport.succeeded`
    writes it before telling anyone)."""
    if not run_ids:
        return set()
    with get_client(sync_client=True) as client:
        records = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(like_=DEPLOYED_PREFIX),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(r) for r in run_ids]),
            )
        )
    return {str(r.flow_run_id) for r in records if r.flow_run_id} & run_ids


def earlier_ref(app: str, environment: str, sha: str) -> str | None:
    """The ref ``sha`` was deployed from last time it ran in this app environment, if recorded."""
    with get_client(sync_client=True) as client:
        records = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[deployed_key(app, environment)])
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=50,
        )
    for record in records:
        facts = _FACTS.search(str(record.data or ""))
        if facts:
            earlier = json.loads(facts.group(1))
            if earlier.get("sha") == sha and earlier.get("ref") not in (None, PREVIOUS):
                return str(earlier["ref"])
    return None


def deployed_everywhere() -> list[Deployed]:
    """The latest ``deployed-*`` record of every app environment, sorted by app and environment."""
    key_filter = ArtifactCollectionFilterKey(like_=DEPLOYED_PREFIX)
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=key_filter),
            sort=ArtifactCollectionSort.KEY_ASC,
        )
    found = []
    for artifact in latest:
        facts = _FACTS.search(str(artifact.data or ""))
        if artifact.key and artifact.key.startswith(DEPLOYED_PREFIX) and facts:
            found.append(Deployed(**json.loads(facts.group(1))))
    return sorted(found, key=lambda d: (d.app, d.environment))


def recent_runs(app: str, environment: str | None, limit: int = 50) -> list[RecentRun]:
    """The newest deploy and rollback runs of ``app`` (in ``environment``), newest first."""
    tags = run_tags(app, environment or "")[: 2 if environment else 1]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags)),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
    return [
        RecentRun(
            name=run.name,
            state=run.state_name or "unknown",
            ref=run.parameters.get("ref"),
            requested_by=run.parameters.get("requested_by"),
            when=run.expected_start_time,
            url=url_for("flow-run", obj_id=run.id) or "",
        )
        for run in runs
    ]
