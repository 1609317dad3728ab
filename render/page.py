"""How the history reads in the Prefect UI: a run's deploy report (Markdown) and the rows of
the ``environments`` page (table cells are Markdown). No I/O: :mod:`adapters.history` writes
them."""

from datetime import datetime

from model.history import EnvironmentRow
from model.summary import DeploySummary


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
    if summary.change is not None:
        change = summary.change
        compare = f" ({_link('compare', change.url)})" if change.url else ""
        rows.append(("changes", f"{_cell(change.words)}{compare}"))
    lines = [f"# {summary.title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "| step | state | seconds |", "|---|---|---|"]
    for step in summary.steps:
        seconds = f"{step.seconds:.1f}" if step.seconds is not None else "–"
        lines.append(f"| {step.name} | {step.state} | {seconds} |")
    if summary.error:
        lines += ["", "## What went wrong", "", "```", summary.error, "```"]
    return "\n".join(lines)


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
