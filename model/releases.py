"""Releases and what a host has of them, as data; and how a host that a dead run left behind
is brought back (:func:`recovery`). Reading and changing a host is :mod:`tasks.hosts`.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal


@dataclass(frozen=True)
class Release:
    """One deployable build: ``id`` names its folder under ``releases/`` on every host."""

    id: str
    sha: str

    @classmethod
    def new(cls, sha: str, now: datetime | None = None) -> "Release":
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        return cls(id=f"{stamp}-{sha[:7]}", sha=sha)


@dataclass(frozen=True)
class Switching:
    """A switch in progress (or left behind by a run that died)."""

    from_id: str | None
    to_id: str
    run_id: str


@dataclass(frozen=True)
class HostState:
    """What one host has: its releases, the live one, its record and any unfinished switch.

    >>> state = HostState(current="r3", releases={"r1": "a", "r2": "b", "r3": "c"},
    ...                   history=["r1", "r3"])
    >>> state.good, state.previous_good
    ('r3', 'r1')
    >>> sorted(state.keep(2))
    ['r1', 'r2', 'r3']
    """

    current: str | None
    releases: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    switching: Switching | None = None
    partials: list[str] = field(default_factory=list)

    @property
    def good(self) -> str | None:
        """The release that last ran successfully here.

        Before anything was recorded that is the release a switch started from, or else
        ``current`` (hosts deployed before HISTORY existed).
        """
        if self.history:
            return self.history[-1]
        return self.switching.from_id if self.switching else self.current

    @property
    def previous_good(self) -> str | None:
        """The release that ran successfully before :attr:`good`."""
        earlier = [r for r in self.history if r != self.good]
        return earlier[-1] if earlier else None

    def keep(self, newest: int) -> set[str]:
        """Releases pruning must keep: the newest ``newest``, and every one still needed."""
        ordered = sorted(self.releases)
        needed = {self.current, self.good, self.previous_good}
        if self.switching:
            needed |= {self.switching.from_id, self.switching.to_id}
        return set(ordered[-newest:]) | {r for r in needed if r in self.releases}


Action = Literal["none", "record", "restart", "switch", "clear"]


@dataclass(frozen=True)
class Recovery:
    """What a host needs before a new deploy, and why.

    - ``record``: the switch finished and its run succeeded; only the record is missing;
    - ``switch``: switch back to ``release`` (the last good one) and restart;
    - ``restart``: ``current`` is right, but the host does not serve it;
    - ``clear``: only the stale switch marker has to go;
    - ``none``: nothing to do.
    """

    action: Action
    release: str | None
    reason: str


def recovery(state: HostState, serves_current: bool | None, switch_succeeded: bool) -> Recovery:
    """Decide how to bring a host back to one consistent release.

    ``serves_current``: whether the host serves the sha of ``current`` (None: no health URL);
    ``switch_succeeded``: whether the run named in SWITCHING completed successfully.

    >>> crashed = HostState("r2", {"r1": "a", "r2": "b"}, ["r1"], Switching("r1", "r2", "run"))
    >>> recovery(crashed, serves_current=True, switch_succeeded=False).action
    'switch'
    >>> recovery(crashed, serves_current=True, switch_succeeded=True).action
    'record'
    >>> recovery(HostState("r1", {"r1": "a"}, ["r1"]), serves_current=False,
    ...          switch_succeeded=False).reason
    'it does not serve r1, which current names'
    """
    sw, current = state.switching, state.current
    if sw is not None:
        if switch_succeeded and current == sw.to_id:
            return Recovery("record", sw.to_id, f"run {sw.run_id} succeeded; recording {current}")
        target = state.good
        if target is None or target not in state.releases:
            return Recovery("clear", None, f"run {sw.run_id} died; no earlier release to go to")
        if target != current:
            return Recovery("switch", target, f"run {sw.run_id} died after switching to {current}")
        if serves_current is False:
            return Recovery("restart", target, f"run {sw.run_id} died before {target} restarted")
        return Recovery("clear", target, f"run {sw.run_id} died before switching")
    if current is not None and serves_current is False:
        return Recovery("restart", current, f"it does not serve {current}, which current names")
    return Recovery("none", current, "consistent")
