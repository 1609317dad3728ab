"""Deploy history in Prefect: what each run did, what is deployed where, and recent runs.

Artifacts a deploy writes:

- on the run itself, the deploy report (Markdown): who asked, which ref and sha, where, which
  hosts, how long each step took and, for a failed deploy, the failure excerpt;
- under the key ``deployed-<app>-<environment>``, after every successful deploy, the release
  that now runs there: a table artifact of one row (:class:`Deployed`), data the Prefect UI
  shows as a table and :func:`deployed_everywhere` reads back as it was written;
- the ``environments`` page (:func:`write_environments`): one row per app environment with what
  runs there, who deployed it and when, its lock and its last verify. Every deploy, rollback,
  lock change and verify writes it again; ``chatops status`` and ``/deploy where`` answer from
  the same rows (:func:`environment_rows`).

Runs are tagged ``app:<app>`` and ``env:<environment>`` (:func:`model.summary.run_tags`);
:func:`recent_runs` lists them newest first.
"""

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
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

from adapters.locks import FREEZES_QUERY, all_locks, freezes_from
from blocks.app import App
from blocks.documents import saved_documents
from model.history import Deployed, EnvironmentRow, PlanCheck, RecentRun, Verified
from model.summary import PREVIOUS, DeploySummary, run_tags
from model.verify import Checked
from render.page import page_row, report_markdown

T = TypeVar("T")
DEPLOYED_PREFIX = "deployed-"
VERIFIED_PREFIX = "verified-"
ENVIRONMENTS_KEY = "environments"
# Records written before they were tables: Markdown with the facts in an HTML comment.
_MARKDOWN_FACTS = re.compile(r"<!-- chatops:deployed (\{.*\}) -->")


def deployed_key(app: str, environment: str) -> str:
    return f"{DEPLOYED_PREFIX}{app}-{environment}"


def write_report(summary: DeploySummary) -> None:
    """Attach the deploy report to the current run."""
    create_markdown_artifact(
        markdown=report_markdown(summary), description=f"Deploy report: {summary.title}"
    )


def write_deployed(summary: DeploySummary, commit_url: str | None = None) -> None:
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
        commit_url=commit_url,
    )
    create_table_artifact(
        key=deployed_key(summary.app, summary.environment),
        table=[asdict(deployed)],
        description=f"What is deployed on {summary.app} {summary.environment}",
    )


def _rows(kind: type[T], data: Any) -> list[T]:
    """The rows of a table artifact's data as ``kind`` (a column it does not know is left out,
    so a record written by a newer version still reads)."""
    fields = set(kind.__dataclass_fields__)  # type: ignore[attr-defined]
    return [kind(**{k: v for k, v in row.items() if k in fields}) for row in _records(data)]


def _records(data: Any) -> list[dict[str, Any]]:
    """The rows of a table artifact's data (or of an older Markdown record)."""
    try:
        rows = json.loads(str(data or ""))
    except ValueError:
        facts = _MARKDOWN_FACTS.search(str(data or ""))
        rows = [json.loads(facts.group(1))] if facts else []
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


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
        for earlier in _records(record.data):
            if earlier.get("sha") == sha and earlier.get("ref") not in (None, PREVIOUS):
                return str(earlier["ref"])
    return None


def deployed_everywhere() -> list[Deployed]:
    """The latest ``deployed-*`` record of every app environment, sorted by app and environment."""
    with get_client(sync_client=True) as client:
        latest = _latest(client, DEPLOYED_PREFIX)
    found = [row for artifact in latest.values() for row in _rows(Deployed, artifact.data)[:1]]
    return sorted(found, key=lambda d: (d.app, d.environment))


def deployed_on(app: str, environment: str) -> Deployed | None:
    """What runs in one app environment now, as its latest ``deployed-*`` record says (None:
    nothing was ever deployed there)."""
    key = ArtifactCollectionFilterKey(any_=[deployed_key(app, environment)])
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=key), limit=1
        )
    rows = [row for artifact in latest for row in _rows(Deployed, artifact.data)]
    return rows[0] if rows else None


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


def verified_key(app: str, environment: str) -> str:
    return f"{VERIFIED_PREFIX}{app}-{environment}"


def write_verified(app: str, environment: str, checked: list[Checked]) -> None:
    """Record what a verify run found on the hosts of one app environment (one row per host)."""
    create_table_artifact(
        key=verified_key(app, environment),
        table=[asdict(c) for c in checked],
        description=f"What the hosts of {app} {environment} ran when last verified",
    )


def _latest(client: Any, prefix: str) -> dict[str, Any]:
    """The latest artifact of every key starting with ``prefix``, by key."""
    latest = client.read_latest_artifacts(
        artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(like_=prefix)),
        sort=ArtifactCollectionSort.KEY_ASC,
    )
    return {a.key: a for a in latest if a.key and a.key.startswith(prefix)}


def _verified(artifact: Any) -> Verified:
    checked = _rows(Checked, artifact.data)
    url = url_for("flow-run", obj_id=artifact.flow_run_id) if artifact.flow_run_id else None
    return Verified(checked, artifact.updated or artifact.created, url)


def _configured(client: Any) -> set[tuple[str, str]]:
    """Every app environment the configuration names (App blocks, read without secrets)."""
    found: set[tuple[str, str]] = set()
    for document in saved_documents(client, [App.get_block_type_slug()]):
        environments = (document["data"] or {}).get("environments") or []
        found |= {(str(document["name"]), str(env)) for env in environments}
    return found


def environment_rows() -> list[EnvironmentRow]:
    """One row per app environment (configured, deployed, locked or verified), sorted by app
    and environment: the rows of the ``environments`` page, ``status`` and ``where``."""
    deployed = {(d.app, d.environment): d for d in deployed_everywhere()}
    locks = {(lock.app, lock.environment): lock for lock in all_locks()}
    with get_client(sync_client=True) as client:
        verified = {key: _verified(a) for key, a in _latest(client, VERIFIED_PREFIX).items()}
        names = _configured(client) | set(deployed) | set(locks)
        freezes = client.request("POST", "/variables/filter", json=FREEZES_QUERY).json()
    frozen = {freeze.environment: freeze for freeze in freezes_from(freezes)}
    return [
        EnvironmentRow(
            app,
            env,
            deployed.get((app, env)),
            locks.get((app, env)),
            verified.get(verified_key(app, env)),
            frozen.get(env),
        )
        for app, env in sorted(names)
    ]


def write_environments() -> list[EnvironmentRow]:
    """Write the ``environments`` page again from what Prefect holds now; return its rows.

    The page belongs to no run (the gateway writes it too, when a lock changes), so it is
    created through the API rather than from a run's context.
    """
    rows = environment_rows()
    now = datetime.now(UTC)
    table = [page_row(row, now) for row in rows]
    page = ArtifactCreate(
        key=ENVIRONMENTS_KEY,
        type="table",
        data=json.dumps(table or [{"app": "–", "environment": "nothing configured yet"}]),
        description=f"What runs where (updated {now:%Y-%m-%d %H:%M UTC})",
    )
    with get_client(sync_client=True) as client:
        client.create_artifact(page)
    return rows


def findings(artifacts: list[Any]) -> list[Checked]:
    """Every host a verify run checked, from the run's ``verified-*`` artifacts."""
    return [
        checked
        for artifact in artifacts
        if (artifact.key or "").startswith(VERIFIED_PREFIX)
        for checked in _verified(artifact).checked
    ]


PLAN_PREFIX = "plan-"


def write_plan(app: str, environment: str, ref: str, checks: list[PlanCheck]) -> None:
    """Record what a dry run found, on its run (one row per check)."""
    create_table_artifact(
        key=f"{PLAN_PREFIX}{app}-{environment}",
        table=[asdict(check) for check in checks],
        description=f"What a deploy of {ref} to {app} {environment} would do",
    )


def plan(artifacts: list[Any]) -> list[PlanCheck]:
    """What a dry run found, from the run's ``plan-*`` artifact."""
    return [
        check
        for artifact in artifacts
        if (artifact.key or "").startswith(PLAN_PREFIX)
        for check in _rows(PlanCheck, artifact.data)
    ]
