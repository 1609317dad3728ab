"""What the history holds, as data: what runs where (:class:`Deployed`), what a verify found
(:class:`Verified`), one app environment as QA asks about it (:class:`EnvironmentRow`), recent
runs, and what a dry run found (:class:`PlanCheck`). Stored as Prefect artifacts by
:mod:`adapters.history`; shown by :mod:`render.page` and the edge.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from model.locks import Freeze, Lock
from model.verify import Checked


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


@dataclass(frozen=True)
class PlanCheck:
    """One thing a dry run found that a deploy would find: ``ok`` True (it would go ahead),
    False (it would stop there), None (for information)."""

    what: str
    ok: bool | None
    detail: str
