"""The state of one deploy as people see it: one :class:`DeploySummary`, updated as it goes.

The flow's :class:`~flows.report.DeployReport` keeps it current; the Slack card
(:mod:`render.slack_card`), the run report and the deployed-where record (:mod:`adapters.history`)
are renderings of it::

    >>> summary = DeploySummary("shop", "staging", "v1", hosts=["web-1"],
    ...                         steps=[Step("build"), Step("upload")])
    >>> summary.title
    'shop@v1 → staging'
    >>> summary.step("build").state = "done"
    >>> summary.finished_steps
    1
"""

from dataclasses import dataclass, field
from typing import Any, Literal

StepState = Literal["pending", "running", "done", "failed", "skipped", "cached"]
Outcome = Literal["success", "failure", "error"]
PREVIOUS = "previous release"
"""What a rollback without a ref goes back to; also how such a run is titled."""


def run_title(app: str, ref: str, sha: str | None, environment: str) -> str:
    """How a deploy is named everywhere: ``shop@feature-x (1a2b3c4) → staging``."""
    commit = f" ({sha[:7]})" if sha else ""
    return f"{app}@{ref}{commit} → {environment}"


def run_tags(app: str, environment: str) -> list[str]:
    """The tags every run of one app environment carries (history queries filter on them)."""
    return [f"app:{app}", f"env:{environment}"]


ABORTED_BY = "Aborted by "
"""How an aborted run's Cancelling state message starts (the rest names who aborted)."""


def abort_message(who: str) -> str:
    """The message of the Cancelling state an abort sets: ``Aborted by alice``."""
    return f"{ABORTED_BY}{who}"


def aborted_by(message: str | None) -> str | None:
    """Who aborted a run, read from its Cancelling state's ``message``; None if nobody did.

    >>> aborted_by(abort_message("alice")), aborted_by("Runner is shutting down.")
    ('alice', None)
    """
    if message and message.startswith(ABORTED_BY):
        return message[len(ABORTED_BY) :] or None
    return None


@dataclass
class Step:
    """One step of a deploy: its state and the seconds spent in it so far."""

    name: str
    state: StepState = "pending"
    seconds: float | None = None


WAITING_LABEL = "chatops.waiting-for"
"""The flow run label where a run waiting for its slot records the holder (JSON of a
:class:`SlotHolder`); empty once it holds the slot."""


@dataclass(frozen=True)
class SlotHolder:
    """The run holding an app environment's slot, as a run waiting for it records it."""

    run_id: str
    title: str
    kind: str
    """``deploy`` or ``rollback``."""
    app: str
    environment: str
    ref: str
    requested_by: str
    since: str
    """When it took the slot (ISO 8601, UTC; empty if unknown)."""
    run_url: str | None = None


CHANGE_LABEL = "chatops.change"
"""The flow run label where a deploy records what it changes (:func:`change_label`), for the
terminal that follows it."""


@dataclass(frozen=True)
class Change:
    """What a deploy changes against what its environment runs now: commits added and removed.

    ``base`` is the commit running there now (None: nothing runs there yet); ``url`` is the
    compare link, when GitHub is configured::

        >>> Change(3, 1, "1a2b3c4").words, Change(1, 0, "1a2b3c4").words
        ('3 commits added, 1 removed', '1 commit added')
        >>> Change(0, 2, "1a2b3c4").words, Change(0, 0, None).words
        ('2 commits removed', 'first deploy here')
    """

    added: int
    removed: int
    base: str | None
    url: str | None = None

    @property
    def words(self) -> str:
        if self.base is None:
            return "first deploy here"
        if not self.added and not self.removed:
            return "no commit added or removed"
        added = f"{self.added} commit{'s' * (self.added != 1)} added" if self.added else ""
        if not self.removed:
            return added
        if not added:
            return f"{self.removed} commit{'s' * (self.removed != 1)} removed"
        return f"{added}, {self.removed} removed"


def change_label(change: Change) -> str:
    """What the run records under :data:`CHANGE_LABEL`: ``1 commit added (URL)``."""
    return f"{change.words} ({change.url})" if change.url else change.words


@dataclass
class DeploySummary:
    """Who deploys what where, how far it got, and how it ended."""

    app: str
    environment: str
    ref: str
    hosts: list[str]
    steps: list[Step]
    requested_by: str = "someone"
    sha: str | None = None
    release: str | None = None
    run_url: str | None = None
    environment_url: str | None = None
    deployment_id: int | None = None
    outcome: Outcome | None = None
    error: str | None = None
    finished: str | None = None
    force_parameters: dict[str, Any] | None = field(default=None)
    """The parameters of this deploy, offered again as "Deploy anyway" when checks were red."""
    waiting_for: SlotHolder | None = None
    """The run holding the environment's slot while this one waits for it."""
    pull_request_url: str | None = None
    """The pull request whose comment asked for this deploy."""
    change: Change | None = None
    """What it changes against what runs there now; None while unknown (or not comparable)."""

    @property
    def title(self) -> str:
        return run_title(self.app, self.ref, self.sha, self.environment)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    @property
    def finished_steps(self) -> int:
        return sum(s.state in ("done", "skipped", "cached") for s in self.steps)

    @property
    def running_step(self) -> Step | None:
        return next((s for s in self.steps if s.state == "running"), None)

    @property
    def elapsed(self) -> float:
        return sum(s.seconds or 0.0 for s in self.steps)
