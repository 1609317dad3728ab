"""Taking and releasing environment locks from the gateway (the lock itself: :mod:`adapters.locks`).

Taking a lock *creates* its Prefect Variable: the server refuses a second create with the same
name, so two people locking at once cannot both win. A freeze (:class:`adapters.locks.Freeze`) is
kept the same way, one per environment name. The rules::

    await locks.take(Lock("shop", "production", by="U1", message="freeze", at=now))  # locked
    await locks.take(Lock("shop", "production", by="U2", ...))         # LockHeld: U1 has it
    await locks.take(Lock("shop", "production", by="U2", ...), force=True)  # U2 takes it over
    await locks.release("shop", "production", by="U2", via="slack")    # unlocked

Every call is one or two Prefect API round trips bounded by ``timeout``; past it,
:class:`LocksUnavailable` is raised so a caller can say so instead of guessing. Every change is
passed to the catalog at once, so this gateway's next answer already knows it, and shown on the
``environments`` page in the background (:func:`adapters.history.write_environments`).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import asdict
from typing import TypeVar

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from adapters import history
from adapters.locks import FREEZE_TAG, LOCK_TAG, freeze_name, lock_name
from chatops.catalog import Catalog, read_locks
from model.errors import DeployError, DeployFailure
from model.locks import Freeze, Lock

T = TypeVar("T")
logger = logging.getLogger("chatops.locks")


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
        self._page_updates: set[asyncio.Task[object]] = set()

    async def all(self) -> list[Lock]:
        """Every lock, sorted by app and environment."""
        return await self._bounded(read_locks(self.client))

    async def take(self, wanted: Lock, force: bool = False) -> Lock | None:
        """Lock for ``wanted.by``; return the lock it replaced (a takeover or a new message).

        Raises :class:`LockHeld` when someone else holds it and ``force`` is false.
        """
        replaced = await self._bounded(self._take(wanted, force))
        self.catalog.lock_changed(wanted.app, wanted.environment, wanted)
        self._update_page()
        return replaced

    async def release(
        self, app: str, environment: str, by: str, via: str, force: bool = False
    ) -> Lock | None:
        """Unlock; return the removed lock, or None when there was none.

        Raises :class:`LockHeld` when someone else holds it and ``force`` is false.
        """
        removed = await self._bounded(self._release(app, environment, by, via, force))
        self.catalog.lock_changed(app, environment, None)
        self._update_page()
        return removed

    async def freeze(self, freeze: Freeze) -> None:
        """Freeze ``freeze.environment`` (a new reason replaces the old one)."""
        await self._bounded(self._freeze(freeze))
        self.catalog.freeze_changed(freeze.environment, freeze)
        self._update_page()

    async def unfreeze(self, environment: str) -> Freeze | None:
        """Lift the freeze on ``environment``; return it, or None when there was none."""
        lifted = await self._bounded(self._unfreeze(environment))
        self.catalog.freeze_changed(environment, None)
        self._update_page()
        return lifted

    async def _freeze(self, freeze: Freeze) -> None:
        name = freeze_name(freeze.environment)
        try:
            await self.client.create_variable(
                VariableCreate(name=name, value=asdict(freeze), tags=[FREEZE_TAG])
            )
        except ObjectAlreadyExists:
            await self.client.update_variable(
                VariableUpdate(name=name, value=asdict(freeze), tags=[FREEZE_TAG])
            )

    async def _unfreeze(self, environment: str) -> Freeze | None:
        variable = await self.client.read_variable_by_name(freeze_name(environment))
        if variable is None:
            return None
        with contextlib.suppress(ObjectNotFound):  # someone else unfroze it just now
            await self.client.delete_variable_by_name(freeze_name(environment))
        return Freeze.from_value(environment, variable.value)

    def _update_page(self) -> None:
        """Write the ``environments`` page again, without making the answer wait for it."""
        update = asyncio.create_task(asyncio.to_thread(history.write_environments))
        self._page_updates.add(update)  # keep a reference until it is done
        update.add_done_callback(self._page_updated)

    def _page_updated(self, update: "asyncio.Task[object]") -> None:
        self._page_updates.discard(update)
        if not update.cancelled() and update.exception() is not None:
            logger.warning("Could not update the environments page: %s", update.exception())

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
        create = VariableCreate(name=name, value=asdict(wanted), tags=[LOCK_TAG])
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
            VariableUpdate(name=name, value=asdict(wanted), tags=[LOCK_TAG])
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
