"""Environment locks: "nobody deploys shop to production until I say so".

A lock is a Prefect Variable named ``lock-<app>-<environment>`` holding the :class:`Lock`'s
fields (``dataclasses.asdict``: app, environment, by, message, at, via) and tagged
``chatops-lock``, so the Prefect UI (Variables page) shows every lock and an operator can remove
one there. ``by`` is who
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
FREEZE_TAG = "chatops-freeze"
FREEZE_PREFIX = "freeze-"


@dataclass(frozen=True)
class Lock:
    """Who locked an app environment, through which entry point, why and when (ISO 8601)."""

    app: str
    environment: str
    by: str
    message: str | None
    at: str
    via: str = "slack"

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


@dataclass(frozen=True)
class Freeze:
    """Nobody deploys any app to environments of this name until it is unfrozen; rollbacks
    still run (a freeze is for "do not change it", and a rollback is how a bad change is undone).

    Stored like a lock: the Prefect Variable ``freeze-<environment>``, tagged ``chatops-freeze``::

        >>> freeze = Freeze("production", by="U1", message="release week", at="", via="slack")
        >>> print(EnvironmentFrozen(freeze))  # doctest: +NORMALIZE_WHITESPACE
        production is frozen by U1 (slack): release week. Nothing deploys to production until
        someone runs `unfreeze production`; a rollback still works.
    """

    environment: str
    by: str
    message: str | None
    at: str
    via: str = "slack"

    @classmethod
    def from_value(cls, environment: str, value: Any) -> "Freeze":
        held = Lock.from_value("", environment, value) or Lock("", environment, "someone", None, "")
        return cls(environment, held.by, held.message, held.at, held.via)

    def describe(self) -> str:
        """``:snowflake: *production* is frozen by <@U1> since …: release week. …``"""
        held = Lock("", self.environment, self.by, self.message, self.at, self.via)
        since = f" since {held.since}" if self.at else ""
        reason = f": {escape_mrkdwn(self.message)}" if self.message else ""
        return (
            f":snowflake: *{self.environment}* is frozen by {held.holder}{since}{reason}. "
            f"Nothing deploys there until someone runs `unfreeze {self.environment}`; "
            "a rollback still works."
        )


def freeze_name(environment: str) -> str:
    return f"{FREEZE_PREFIX}{environment}"


FREEZES_QUERY = {"variables": {"tags": {"all_": [FREEZE_TAG]}}, "limit": 200}
"""The Prefect API query (``POST /variables/filter``) for every freeze."""


def freezes_from(variables: list[dict[str, Any]]) -> list[Freeze]:
    """The freezes among Prefect Variables (as the API returns them), by environment."""
    found = []
    for variable in variables:
        name = str(variable.get("name") or "")
        if name.startswith(FREEZE_PREFIX):
            found.append(Freeze.from_value(name.removeprefix(FREEZE_PREFIX), variable.get("value")))
    return sorted(found, key=lambda freeze: freeze.environment)


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


def read_freeze(environment: str) -> Freeze | None:
    """The freeze on environments named ``environment`` right now, read from the Prefect API."""
    with get_client(sync_client=True) as client:
        variable = client.read_variable_by_name(freeze_name(environment))
    return Freeze.from_value(environment, variable.value) if variable else None


def read_lock(app: str, environment: str) -> Lock | None:
    """The lock on ``app`` ``environment`` right now, read from the Prefect API."""
    with get_client(sync_client=True) as client:
        variable = client.read_variable_by_name(lock_name(app, environment))
    return Lock.from_value(app, environment, variable.value) if variable else None


def locks_from(variables: list[dict[str, Any]]) -> list[Lock]:
    """The locks among Prefect Variables (as the API returns them), sorted by app and
    environment; a variable whose name does not match the lock it holds is not one."""
    found = []
    for variable in variables:
        value = variable.get("value")
        if isinstance(value, dict):
            app, environment = str(value.get("app", "")), str(value.get("environment", ""))
            lock = Lock.from_value(app, environment, value)
            if lock is not None and lock_name(app, environment) == variable.get("name"):
                found.append(lock)
    return sorted(found, key=lambda lock: (lock.app, lock.environment))


LOCKS_QUERY = {"variables": {"tags": {"all_": [LOCK_TAG]}}, "limit": 200}
"""The Prefect API query (``POST /variables/filter``) for every lock."""


def all_locks() -> list[Lock]:
    """Every lock, read from the Prefect API."""
    with get_client(sync_client=True) as client:
        return locks_from(client.request("POST", "/variables/filter", json=LOCKS_QUERY).json())
