"""Deploy history in Prefect: what each run did, and what is deployed where.

Two Markdown artifacts are written per deploy:

- on the run itself, the deploy report: who asked, which ref and sha, where, which hosts, how
  long each step took and, for a failed deploy, the failure excerpt;
- under the key ``deployed-<app>-<environment>``, after every successful deploy, the release
  that now runs there. The Prefect UI's Artifacts page lists one per app environment, with its
  history; :func:`deployed_everywhere` reads the latest of each.
"""

from dataclasses import dataclass
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.client.schemas.sorting import ArtifactCollectionSort

DEPLOYED_PREFIX = "deployed-"


@dataclass(frozen=True)
class Deployed:
    """The latest successful deploy of one app environment, as the Prefect artifact says."""

    key: str
    markdown: str
    flow_run_id: str | None
    updated: str


def deployed_key(app: str, environment: str) -> str:
    return f"{DEPLOYED_PREFIX}{app}-{environment}"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ") if value not in (None, "") else "–"


def report_markdown(summary: dict[str, Any]) -> str:
    """The deploy report of one run, as Markdown."""
    lines = [
        f"# {summary['title']}",
        "",
        "| | |",
        "|---|---|",
        f"| outcome | **{_cell(summary.get('outcome'))}** |",
        f"| requested by | {_cell(summary.get('requested_by'))} |",
        f"| ref | `{_cell(summary.get('ref'))}` |",
        f"| sha | `{_cell(summary.get('sha'))}` |",
        f"| environment | {_cell(summary['environment'])} |",
        f"| hosts | {_cell(', '.join(summary.get('hosts') or []))} |",
        f"| release | `{_cell(summary.get('release'))}` |",
        f"| GitHub deployment | {_cell(summary.get('deployment_id'))} |",
        "",
        "| step | state | seconds |",
        "|---|---|---|",
    ]
    for step in summary["steps"]:
        seconds = f"{step['seconds']:.1f}" if step.get("seconds") is not None else "–"
        lines.append(f"| {step['name']} | {step['state']} | {seconds} |")
    if summary.get("error"):
        lines += ["", "## What went wrong", "", "```", summary["error"], "```"]
    return "\n".join(lines)


def deployed_markdown(summary: dict[str, Any]) -> str:
    """What now runs in one app environment, as Markdown."""
    return "\n".join(
        [
            f"**{summary['app']}** on **{summary['environment']}**: "
            f"`{_cell(summary.get('ref'))}` at `{_cell(summary.get('sha'))}`",
            "",
            f"- release `{_cell(summary.get('release'))}` on {_cell(', '.join(summary['hosts']))}",
            f"- deployed by {_cell(summary.get('requested_by'))} "
            f"at {_cell(summary.get('finished'))}",
            f"- run: {_cell(summary.get('run_url'))}",
        ]
    )


def write_report(summary: dict[str, Any]) -> None:
    """Attach the deploy report to the current run."""
    create_markdown_artifact(
        markdown=report_markdown(summary), description=f"Deploy report: {summary['title']}"
    )


def write_deployed(summary: dict[str, Any]) -> None:
    """Record that this run's release now runs in its app environment."""
    create_markdown_artifact(
        key=deployed_key(summary["app"], summary["environment"]),
        markdown=deployed_markdown(summary),
        description=f"What is deployed on {summary['app']} {summary['environment']}",
    )


def deployed_everywhere() -> list[Deployed]:
    """The latest ``deployed-*`` artifact of every app environment, sorted by key."""
    key_filter = ArtifactCollectionFilterKey(like_=DEPLOYED_PREFIX)
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=key_filter),
            sort=ArtifactCollectionSort.KEY_ASC,
        )
    return [
        Deployed(
            key=a.key,
            markdown=str(a.data),
            updated=str(a.updated),
            flow_run_id=str(a.flow_run_id) if a.flow_run_id else None,
        )
        for a in latest
        if a.key and a.key.startswith(DEPLOYED_PREFIX)
    ]
