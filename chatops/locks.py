"""Environment locks: "nobody deploys shop to production until I say so".

A lock is a Prefect Variable named ``lock-<app>-<environment>`` holding
``{"by", "message", "at", "app", "environment"}`` and tagged ``chatops-lock``, so the Prefect UI
(Variables page) shows every lock and an operator can remove one there. ``by`` is the Slack user
id that took it.

Taking a lock *creates* the variable: the server refuses a second create with the same name, so
two people locking at once cannot both win. The rules::

    await locks.take("shop", "production", by="U1", message="release freeze")   # locked
    await locks.take("shop", "production", by="U2")                # LockHeld: U1 has it
    await locks.take("shop", "production", by="U2", force=True)    # U2 steals it (returns U1's)
    await locks.blocking("shop", "production", user="U1")          # U2's lock: it blocks U1
    await locks.release("shop", "production", by="U2")             # unlocked

Every call is one or two Prefect API round trips bounded by ``timeout``; past it,
:class:`LocksUnavailable` is raised so a caller can say so instead of guessing.
"""

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LOCK_TAG = "chatops-lock"
LOCK_PREFIX = "lock-"
T = TypeVar("T")


@dataclass(frozen=True)
class Lock:
    """Who locked an app environment, why, and when (ISO 8601, UTC)."""

    app: str
    environment: str
    by: str
    message: str | None
    at: str

    def value(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "environment": self.environment,
            "by": self.by,
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


class LockHeld(Exception):
    """Someone else holds the lock; ``lock`` says who and why."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(f"{lock.app} {lock.environment} is locked by {lock.by}")
        self.lock = lock


class LocksUnavailable(Exception):
    """Prefect did not answer in time (or failed), so the lock state is unknown."""


def lock_name(app: str, environment: str) -> str:
    """The Prefect Variable name of a lock (app and environment names are ``[a-z0-9-]``)."""
    return f"{LOCK_PREFIX}{app}-{environment}"


class Locks:
    """Locks stored as Prefect Variables through ``client``; see the module docstring."""

    def __init__(self, client: PrefectClient, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout

    async def get(self, app: str, environment: str) -> Lock | None:
        return await self._bounded(self._read(app, environment))

    async def all(self) -> list[Lock]:
        """Every lock, sorted by app and environment."""
        return await self._bounded(self._read_all())

    async def blocking(
        self, app: str, environment: str, user: str | None, force: bool = False
    ) -> Lock | None:
        """The lock that stops ``user`` deploying there (their own lock never does), or None.

        ``user=None`` (an automatic deploy) is blocked by any lock; ``force`` by none.
        """
        if force:
            return None
        lock = await self.get(app, environment)
        return lock if lock is not None and lock.by != user else None

    async def take(
        self, app: str, environment: str, by: str, message: str | None = None, force: bool = False
    ) -> Lock | None:
        """Lock for ``by``; return the lock it replaced (a steal or a new message), if any.

        Raises :class:`LockHeld` when someone else holds it and ``force`` is false.
        """
        wanted = Lock(app, environment, by, message, datetime.now(UTC).isoformat())
        return await self._bounded(self._take(wanted, force))

    async def release(
        self, app: str, environment: str, by: str, force: bool = False
    ) -> Lock | None:
        """Unlock; return the removed lock, or None when there was none.

        Raises :class:`LockHeld` when someone else holds it and ``force`` is false.
        """
        return await self._bounded(self._release(app, environment, by, force))

    async def _bounded(self, work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, self.timeout)
        except LockHeld:
            raise
        except Exception as exc:
            raise LocksUnavailable(type(exc).__name__) from exc

    async def _read(self, app: str, environment: str) -> Lock | None:
        variable = await self.client.read_variable_by_name(lock_name(app, environment))
        return _from_value(variable.value, app, environment) if variable else None

    async def _read_all(self) -> list[Lock]:
        response = await self.client.request(
            "POST",
            "/variables/filter",
            json={"variables": {"tags": {"all_": [LOCK_TAG]}}, "limit": 200},
        )
        found = []
        for variable in response.json():
            value = variable.get("value")
            if isinstance(value, dict):
                lock = _from_value(
                    value, str(value.get("app", "")), str(value.get("environment", ""))
                )
                if lock is not None and lock_name(lock.app, lock.environment) == variable["name"]:
                    found.append(lock)
        return sorted(found, key=lambda lock: (lock.app, lock.environment))

    async def _take(self, wanted: Lock, force: bool) -> Lock | None:
        name = lock_name(wanted.app, wanted.environment)
        try:
            await self.client.create_variable(
                VariableCreate(name=name, value=wanted.value(), tags=[LOCK_TAG])
            )
            return None
        except ObjectAlreadyExists:
            pass
        held = await self._read(wanted.app, wanted.environment)
        if held is not None and held.by != wanted.by and not force:
            raise LockHeld(held)
        if held is None:  # unlocked since the create failed: try again from the start
            await self.client.create_variable(
                VariableCreate(name=name, value=wanted.value(), tags=[LOCK_TAG])
            )
            return None
        await self.client.update_variable(
            VariableUpdate(name=name, value=wanted.value(), tags=[LOCK_TAG])
        )
        return held

    async def _release(self, app: str, environment: str, by: str, force: bool) -> Lock | None:
        held = await self._read(app, environment)
        if held is None:
            return None
        if held.by != by and not force:
            raise LockHeld(held)
        with contextlib.suppress(ObjectNotFound):  # someone else unlocked it just now
            await self.client.delete_variable_by_name(lock_name(app, environment))
        return held


def _from_value(value: Any, app: str, environment: str) -> Lock | None:
    """A Lock from a variable's value; a value edited into nonsense still reads as locked."""
    if not isinstance(value, dict):
        return Lock(app, environment, "someone", None, "") if value is not None else None
    message = value.get("message")
    return Lock(
        app=app,
        environment=environment,
        by=str(value.get("by") or "someone"),
        message=str(message) if message else None,
        at=str(value.get("at") or ""),
    )
