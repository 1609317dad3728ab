"""Taking and releasing environment locks from the gateway (the lock itself: :mod:`tasks.locks`).

Taking a lock *creates* its Prefect Variable: the server refuses a second create with the same
name, so two people locking at once cannot both win. The rules::

    await locks.take(Lock("shop", "production", by="U1", message="freeze", at=now))  # locked
    await locks.take(Lock("shop", "production", by="U2", ...))         # LockHeld: U1 has it
    await locks.take(Lock("shop", "production", by="U2", ...), force=True)  # U2 takes it over
    await locks.release("shop", "production", by="U2", via="slack")    # unlocked

Every call is one or two Prefect API round trips bounded by ``timeout``; past it,
:class:`LocksUnavailable` is raised so a caller can say so instead of guessing. Every change is
passed to the catalog at once, so this gateway's next answer already knows it.
"""

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from blocks.errors import DeployError, DeployFailure
from chatops.catalog import Catalog, read_locks
from tasks.locks import LOCK_TAG, Lock, lock_name

T = TypeVar("T")


class LockHeld(DeployFailure):
    """Someone else holds the lock; ``lock`` says who and why."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(f"{lock.app} {lock.environment} is locked by {lock.by}")
        self.lock = lock


class LocksUnavailable(DeployError):
    """Prefect did not answer in time (or failed), so the lock state is unknown."""


class Locks:
    """Locks stored as Prefect Variables through ``client``; see the module docstring."""

    def __init__(self, client: PrefectClient, catalog: Catalog, timeout: float = 10.0) -> None:
        self.client = client
        self.catalog = catalog
        self.timeout = timeout

    async def all(self) -> list[Lock]:
        """Every lock, sorted by app and environment."""
        return await self._bounded(read_locks(self.client))

    async def take(self, wanted: Lock, force: bool = False) -> Lock | None:
        """Lock for ``wanted.by``; return the lock it replaced (a takeover or a new message).

        Raises :class:`LockHeld` when someone else holds it and ``force`` is false.
        """
        replaced = await self._bounded(self._take(wanted, force))
        self.catalog.lock_changed(wanted.app, wanted.environment, wanted)
        return replaced

    async def release(
        self, app: str, environment: str, by: str, via: str, force: bool = False
    ) -> Lock | None:
        """Unlock; return the removed lock, or None when there was none.

        Raises :class:`LockHeld` when someone else holds it and ``force`` is false.
        """
        removed = await self._bounded(self._release(app, environment, by, via, force))
        self.catalog.lock_changed(app, environment, None)
        return removed

    async def _bounded(self, work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, self.timeout)
        except LockHeld:
            raise
        except Exception as exc:
            raise LocksUnavailable(type(exc).__name__) from exc

    async def _read(self, app: str, environment: str) -> Lock | None:
        variable = await self.client.read_variable_by_name(lock_name(app, environment))
        return Lock.from_value(app, environment, variable.value) if variable else None

    async def _take(self, wanted: Lock, force: bool) -> Lock | None:
        name = lock_name(wanted.app, wanted.environment)
        create = VariableCreate(name=name, value=wanted.value(), tags=[LOCK_TAG])
        try:
            await self.client.create_variable(create)
            return None
        except ObjectAlreadyExists:
            pass
        held = await self._read(wanted.app, wanted.environment)
        if held is None:  # unlocked since the create failed: create it now
            await self.client.create_variable(create)
            return None
        if held.stops(wanted.by, wanted.via) and not force:
            raise LockHeld(held)
        await self.client.update_variable(
            VariableUpdate(name=name, value=wanted.value(), tags=[LOCK_TAG])
        )
        return held

    async def _release(
        self, app: str, environment: str, by: str, via: str, force: bool
    ) -> Lock | None:
        held = await self._read(app, environment)
        if held is None:
            return None
        if held.stops(by, via) and not force:
            raise LockHeld(held)
        with contextlib.suppress(ObjectNotFound):  # someone else unlocked it just now
            await self.client.delete_variable_by_name(lock_name(app, environment))
        return held
