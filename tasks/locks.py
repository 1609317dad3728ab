"""Environment locks: "nobody deploys shop to production until I say so".

A lock is a Prefect Variable named ``lock-<app>-<environment>`` holding
``{"by", "via", "message", "at", "app", "environment"}`` and tagged ``chatops-lock``, so the
Prefect UI (Variables page) shows every lock and an operator can remove one there. ``by`` is who
took it: a Slack user id, or the CLI user of the token when ``via`` is ``cli``.

The gateway takes and releases locks (:mod:`chatops.locks`) and refuses requests against them at
once; the deploy and rollback flows read the lock again before they touch anything, so a run
started any other way (the CLI, "Run" in the Prefect UI) is held to it too::

    >>> lock = Lock("shop", "production", by="U1", message="release freeze", at="", via="slack")
    >>> lock.stops("U2", via="slack"), lock.stops("U1", via="slack"), lock.stops("U1", via="cli")
    (True, False, True)
    >>> print(EnvironmentLocked(lock))  # doctest: +NORMALIZE_WHITESPACE
    shop production is locked by U1 (slack): release freeze. Ask U1 to unlock it, or take the
    lock over with `lock production on shop steal` (a forced deploy does not pass it).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect.client.orchestration import get_client

from blocks.errors import DeployFailure
from tasks.slack_card import SLACK_USER_ID, escape_mrkdwn

LOCK_TAG = "chatops-lock"
LOCK_PREFIX = "lock-"


@dataclass(frozen=True)
class Lock:
    """Who locked an app environment, through which entry point, why and when (ISO 8601)."""

    app: str
    environment: str
    by: str
    message: str | None
    at: str
    via: str = "slack"

    def value(self) -> dict[str, Any]:
        """The Prefect Variable's value."""
        return {
            "app": self.app,
            "environment": self.environment,
            "by": self.by,
            "via": self.via,
            "message": self.message,
            "at": self.at,
        }

    @property
    def since(self) -> str:
        """``2026-11-26 09:14 UTC``, for replies."""
        try:
            return datetime.fromisoformat(self.at).strftime("%Y-%m-%d %H:%M UTC")
        except ValueError:
            return self.at

    @property
    def holder(self) -> str:
        """The holder as people read it: a Slack mention, or ``alice (cli)``."""
        if self.via == "slack" and SLACK_USER_ID.match(self.by):
            return f"<@{self.by}>"
        return escape_mrkdwn(f"{self.by} ({self.via})")

    def stops(self, user: str | None, via: str) -> bool:
        """Whether this lock stops ``user`` (asking through ``via``); never its holder.

        ``user=None`` (an automatic deploy) is stopped by any lock. A forced deploy is stopped
        too: only taking the lock over (``lock ENV on APP steal``) gets past someone's lock.
        """
        return user is None or (user, via) != (self.by, self.via)

    def describe(self) -> str:
        """``*production* on *shop* is locked by <@U1> since …: release freeze.``"""
        since = f" since {self.since}" if self.at else ""
        reason = f": {escape_mrkdwn(self.message)}" if self.message else ""
        return f"*{self.environment}* on *{self.app}* is locked by {self.holder}{since}{reason}."

    @classmethod
    def from_value(cls, app: str, environment: str, value: Any) -> "Lock | None":
        """The lock a variable holds; a value edited into nonsense still reads as locked."""
        if value is None:
            return None
        if not isinstance(value, dict):
            return cls(app, environment, "someone", None, "", "ui")
        message = value.get("message")
        return cls(
            app=app,
            environment=environment,
            by=str(value.get("by") or "someone"),
            message=str(message) if message else None,
            at=str(value.get("at") or ""),
            via=str(value.get("via") or "slack"),
        )


def lock_name(app: str, environment: str) -> str:
    """The Prefect Variable name of a lock (app and environment names are ``[a-z0-9-]``)."""
    return f"{LOCK_PREFIX}{app}-{environment}"


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


def read_lock(app: str, environment: str) -> Lock | None:
    """The lock on ``app`` ``environment`` right now, read from the Prefect API."""
    with get_client(sync_client=True) as client:
        variable = client.read_variable_by_name(lock_name(app, environment))
    return Lock.from_value(app, environment, variable.value) if variable else None
