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

Runs are tagged ``app:<app>`` and ``env:<environment>`` (:func:`tasks.summary.run_tags`);
:func:`recent_runs` lists them newest first.
"""

import json
import re
from dataclasses import asdict, dataclass
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
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.utilities.urls import url_for

from blocks.app import App
from tasks.locks import FREEZES_QUERY, Freeze, Lock, all_locks, freezes_from
from tasks.summary import PREVIOUS, DeploySummary, run_tags
from tasks.verify import Checked

T = TypeVar("T")
DEPLOYED_PREFIX = "deployed-"
VERIFIED_PREFIX = "verified-"
ENVIRONMENTS_KEY = "environments"
# Records written before they were tables: Markdown with the facts in an HTML comment.
_MARKDOWN_FACTS = re.compile(r"<!-- chatops:deployed (\{.*\}) -->")


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
    commit_url: str | None = None


@dataclass(frozen=True)
class Verified:
    """The latest verify of one app environment: every host it checked, when, and its run."""

    checked: list[Checked]
    at: datetime | None
    run_url: str | None

    @property
    def drifted(self) -> list[Checked]:
        return [c for c in self.checked if not c.consistent]

    def finding(self) -> str:
        """``all 2 hosts as recorded`` or ``drift on web-1, web-2``."""
        drifted = self.drifted
        if drifted:
            return "drift on " + ", ".join(c.host for c in drifted)
        return f"all {len(self.checked)} hosts as recorded"


@dataclass(frozen=True)
class EnvironmentRow:
    """One app environment as QA asks about it: what runs there, its lock, its last verify."""

    app: str
    environment: str
    deployed: Deployed | None
    lock: Lock | None
    verified: Verified | None
    freeze: Freeze | None = None

    def deployed_at(self) -> datetime | None:
        """When the release that runs there was deployed (None when not recorded)."""
        if self.deployed is None:
            return None
        try:
            return datetime.strptime(self.deployed.finished, "%Y-%m-%d %H:%M:%S UTC").replace(
                tzinfo=UTC
            )
        except ValueError:
            return None


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
    offset = 0
    while True:
        try:
            page = client.read_block_documents_by_type(
                App.get_block_type_slug(), offset=offset, limit=200, include_secrets=False
            )
        except (ObjectNotFound, PrefectHTTPStatusError) as exc:
            if getattr(getattr(exc, "response", None), "status_code", 404) != 404:
                raise
            return found  # no app configured yet: the block type is unknown
        for document in page:
            environments = (document.data or {}).get("environments") or []
            found |= {(str(document.name), str(env)) for env in environments}
        if len(page) < 200:
            return found
        offset += 200


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


def _link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text


def ago(then: datetime | None, now: datetime) -> str:
    """``3 h ago``, ``2 d ago``: how long ago, to the unit people think in."""
    if then is None:
        return "–"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def _held(row: EnvironmentRow) -> list[str]:
    """Who stops deploys there, and why: the environment's freeze, the app environment's lock."""
    held = []
    if row.freeze is not None:
        freeze = row.freeze
        held.append(f"frozen by {freeze.by} ({freeze.via}): {freeze.message or 'no reason given'}")
    if row.lock is not None:
        held.append(f"{row.lock.by} ({row.lock.via}): {row.lock.message or 'no reason given'}")
    return held


def page_row(row: EnvironmentRow, now: datetime) -> dict[str, str]:
    """One row of the ``environments`` page, as the Prefect UI shows it (cells are Markdown)."""
    d, verified = row.deployed, row.verified
    last_verify = "–"
    if verified is not None:
        when = verified.at.strftime("%Y-%m-%d %H:%M UTC") if verified.at else ""
        last_verify = _link(f"{verified.finding()} ({when})", verified.run_url)
    at = row.deployed_at()
    return {
        "app": row.app,
        "environment": row.environment,
        "runs": d.ref if d else "nothing deployed yet",
        "revision": _link(d.sha[:7], d.commit_url) if d and d.sha else "–",
        "deployed by": d.requested_by if d else "–",
        "deployed": f"{at:%Y-%m-%d %H:%M} UTC ({ago(at, now)})" if at else "–",
        "lock": "; ".join(_held(row)) or "–",
        "last verify": last_verify,
        "run": _link("run", d.run_url) if d and d.run_url else "–",
    }


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


@dataclass(frozen=True)
class PlanCheck:
    """One thing a dry run found that a deploy would find: ``ok`` True (it would go ahead),
    False (it would stop there), None (for information)."""

    what: str
    ok: bool | None
    detail: str


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
