"""Locks and freezes, as data: "nobody deploys shop to production until I say so", and "nobody
deploys anything to production this week".

A lock holds one app environment; a freeze every environment of one name, for every app. Both
say who set them (``by``, through ``via``), why (``message``) and when (``at``, ISO 8601).
Where they are stored is :mod:`adapters.locks`; how they read in chat, :mod:`render.chat`::

    >>> lock = Lock("shop", "production", by="U1", message="release freeze", at="", via="slack")
    >>> lock.stops("U2", via="slack"), lock.stops("U1", via="slack"), lock.stops("U1", via="cli")
    (True, False, True)
    >>> print(EnvironmentLocked(lock))  # doctest: +NORMALIZE_WHITESPACE
    shop production is locked by U1 (slack): release freeze. Ask U1 to unlock it, or take the
    lock over with `lock production on shop steal` (a forced deploy does not pass it).
    >>> freeze = Freeze("production", by="U1", message="release week", at="", via="slack")
    >>> print(EnvironmentFrozen(freeze))  # doctest: +NORMALIZE_WHITESPACE
    production is frozen by U1 (slack): release week. Nothing deploys to production until
    someone runs `unfreeze production`; a rollback still works.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from model.errors import DeployFailure


def readable_time(at: str) -> str:
    """``2026-11-26 09:14 UTC`` for an ISO 8601 time; anything else as it is."""
    try:
        return datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return at


def _who_why_when(value: Any) -> dict[str, Any]:
    """``by``, ``message``, ``at`` and ``via`` of a stored value; nonsense still reads as held."""
    if not isinstance(value, dict):
        return {"by": "someone", "message": None, "at": "", "via": "ui"}
    message = value.get("message")
    return {
        "by": str(value.get("by") or "someone"),
        "message": str(message) if message else None,
        "at": str(value.get("at") or ""),
        "via": str(value.get("via") or "slack"),
    }


class _Held:
    """What locks and freezes share: who set them (``by``, through ``via``) and when (``at``)."""

    by: str
    via: str
    at: str

    @property
    def since(self) -> str:
        return readable_time(self.at)


@dataclass(frozen=True)
class Lock(_Held):
    """Who locked an app environment, through which entry point, why and when (ISO 8601)."""

    app: str
    environment: str
    by: str
    message: str | None
    at: str
    via: str = "slack"

    def stops(self, user: str | None, via: str) -> bool:
        """Whether this lock stops ``user`` (asking through ``via``); never its holder.

        ``user=None`` (an automatic deploy) is stopped by any lock. A forced deploy is stopped
        too: only taking the lock over (``lock ENV on APP steal``) gets past someone's lock.
        """
        return user is None or (user, via) != (self.by, self.via)

    @classmethod
    def from_value(cls, app: str, environment: str, value: Any) -> "Lock | None":
        """The lock a stored value holds; a value edited into nonsense still reads as locked."""
        if value is None:
            return None
        return cls(app=app, environment=environment, **_who_why_when(value))


@dataclass(frozen=True)
class Freeze(_Held):
    """Nobody deploys any app to environments of this name until it is unfrozen; rollbacks
    still run (a freeze is for "do not change it", and a rollback is how a bad change is undone).
    """

    environment: str
    by: str
    message: str | None
    at: str
    via: str = "slack"

    @classmethod
    def from_value(cls, environment: str, value: Any) -> "Freeze":
        return cls(environment=environment, **_who_why_when(value))


class EnvironmentLocked(DeployFailure, RuntimeError):
    """A deploy or rollback was asked for an environment someone else has locked."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(
            f"{lock.app} {lock.environment} is locked by {lock.by} ({lock.via})"
            + (f" since {lock.since}" if lock.at else "")
            + (f": {lock.message}" if lock.message else "")
            + f". Ask {lock.by} to unlock it, or take the lock over with "
            + f"`lock {lock.environment} on {lock.app} steal` (a forced deploy does not pass it)."
        )
        self.lock = lock


class EnvironmentFrozen(DeployFailure, RuntimeError):
    """A deploy was asked for an environment that is frozen."""

    def __init__(self, freeze: Freeze) -> None:
        super().__init__(
            f"{freeze.environment} is frozen by {freeze.by} ({freeze.via})"
            + (f": {freeze.message}" if freeze.message else "")
            + f". Nothing deploys to {freeze.environment} until someone runs "
            + f"`unfreeze {freeze.environment}`; a rollback still works."
        )
        self.freeze = freeze
