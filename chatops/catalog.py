"""The apps, environments and locks the gateway knows, kept in memory and refreshed in the
background.

Every Slack command and GitHub event needs the configuration (is ``shop`` an app? which
environments does it have? who may deploy to production? is it locked?), and Slack allows 3 s for
an answer. Reading blocks and locks from Prefect on each request would put the Prefect server on
that path, so the gateway reads them all once at start-up and again every few seconds, each time
within a timeout (locks this gateway takes or releases are in its copy at once; the flows read
the lock afresh anyway)::

    catalog = Catalog(prefect_loader(client), refresh_seconds=5)
    await catalog.refresh()          # at start-up
    catalog.start()                  # then in the background
    app = catalog.snapshot.app("shop")

A refresh that fails or times out keeps the last good :class:`Snapshot`; requests never wait for
one. Blocks are read **without secrets** (SSH keys come back as ``********``): the gateway has no
use for them, so it never holds them.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from prefect.client.orchestration import PrefectClient
from pydantic import ValidationError

from adapters.locks import (
    FREEZES_QUERY,
    LOCKS_QUERY,
    freezes_from,
    lock_name,
    locks_from,
)
from blocks import App, Environment, environment_block_name
from blocks.documents import DOCUMENTS_FILTER, documents_query
from chatops.background import Loop
from model.locks import Freeze, Lock

APP_SLUG = "chatops-app"
ENVIRONMENT_SLUG = "chatops-environment"

logger = logging.getLogger("chatops.catalog")


@dataclass(frozen=True)
class Snapshot:
    """All apps (by name), environments (by block name ``<app>-<env>``) and locks (by variable
    name) at one moment.

    ``loaded_at`` is the ``time.monotonic()`` of the load; 0 means nothing was ever loaded.
    """

    apps: Mapping[str, App] = field(default_factory=dict)
    environments: Mapping[str, Environment] = field(default_factory=dict)
    locks: Mapping[str, Lock] = field(default_factory=dict)
    loaded_at: float = 0.0
    freezes: Mapping[str, Freeze] = field(default_factory=dict)
    """Frozen environment names, each with its freeze."""

    @property
    def loaded(self) -> bool:
        return self.loaded_at > 0

    def app(self, name: str) -> App | None:
        return self.apps.get(name)

    def environment(self, app: str, environment: str) -> Environment | None:
        """The environment's config, if the app lists it and its block exists."""
        found = self.apps.get(app)
        if found is None or environment not in found.environments:
            return None
        return self.environments.get(environment_block_name(app, environment))

    def lock(self, app: str, environment: str) -> Lock | None:
        return self.locks.get(lock_name(app, environment))

    def freeze(self, environment: str) -> Freeze | None:
        return self.freezes.get(environment)

    def with_freeze(self, environment: str, freeze: Freeze | None) -> "Snapshot":
        """This snapshot with ``environment`` frozen (``freeze``) or unfrozen (None)."""
        freezes = {k: v for k, v in self.freezes.items() if k != environment}
        if freeze is not None:
            freezes[environment] = freeze
        return replace(self, freezes=MappingProxyType(freezes))

    def with_lock(self, app: str, environment: str, lock: Lock | None) -> "Snapshot":
        """This snapshot with one lock taken (``lock``) or released (None)."""
        locks = {k: v for k, v in self.locks.items() if k != lock_name(app, environment)}
        if lock is not None:
            locks[lock_name(app, environment)] = lock
        return replace(self, locks=MappingProxyType(locks))

    def apps_for_repository(self, repository: str) -> list[tuple[str, App]]:
        """``(name, app)`` of every app built from ``owner/name`` (GitHub ignores case)."""
        wanted = repository.lower()
        return [
            (name, app)
            for name, app in sorted(self.apps.items())
            if app.repository.lower() == wanted
        ]


Loader = Callable[[], Awaitable[Snapshot]]


class Catalog:
    """Holds the current :class:`Snapshot` and replaces it every ``refresh_seconds``."""

    def __init__(
        self,
        load: Loader,
        refresh_seconds: float = 5.0,
        timeout: float = 5.0,
        reread_seconds: float = 1.0,
    ) -> None:
        self._load = load
        self.refresh_seconds = refresh_seconds
        self.timeout = timeout
        self.reread_seconds = reread_seconds
        self.snapshot = Snapshot()
        self._loop = Loop(self._refresh_forever, "catalog-refresh")
        self._failing = False
        self._changes: dict[tuple[str, str], tuple[float, Lock | None]] = {}
        self._freeze_changes: dict[str, tuple[float, Freeze | None]] = {}
        self._refreshing = asyncio.Lock()

    async def refresh(self) -> bool:
        """Load a new snapshot within the timeout; on any failure keep the old one."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):  # unlike wait_for, never eats a cancel
                snapshot = await self._load()
        except Exception as exc:  # a Prefect outage must not take the gateway down
            if not self._failing:  # once per outage, not every few seconds
                logger.warning(
                    "Configuration refresh failed, keeping the last good copy: %s",
                    type(exc).__name__,
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("Configuration refresh works again")
        self._failing = False
        for (app, environment), (when, lock) in list(self._changes.items()):
            if when >= started:  # changed while the refresh read: ours is newer
                snapshot = snapshot.with_lock(app, environment, lock)
            else:
                del self._changes[(app, environment)]
        for environment, (when, freeze) in list(self._freeze_changes.items()):
            if when >= started:
                snapshot = snapshot.with_freeze(environment, freeze)
            else:
                del self._freeze_changes[environment]
        self.snapshot = snapshot
        return True

    async def refresh_now(self) -> bool:
        """Read the configuration again, but not sooner than ``reread_seconds`` after the last
        read (a burst of requests for something unknown costs one read a second, not one each);
        True if the new copy could be read."""
        min_age = self.reread_seconds
        age = time.monotonic() - self.snapshot.loaded_at
        if age < min_age:
            await asyncio.sleep(min_age - age)
        async with self._refreshing:
            if time.monotonic() - self.snapshot.loaded_at < min_age / 2:
                return True  # another request just refreshed it
            return await self.refresh()

    def lock_changed(self, app: str, environment: str, lock: Lock | None) -> None:
        """Record a lock this gateway just took (or released, ``None``)."""
        self._changes[(app, environment)] = (time.monotonic(), lock)
        self.snapshot = self.snapshot.with_lock(app, environment, lock)

    def freeze_changed(self, environment: str, freeze: Freeze | None) -> None:
        """Record a freeze this gateway just made (or lifted, ``None``)."""
        self._freeze_changes[environment] = (time.monotonic(), freeze)
        self.snapshot = self.snapshot.with_freeze(environment, freeze)

    def start(self) -> None:
        """Refresh in the background until :meth:`stop`."""
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh()


def prefect_loader(client: PrefectClient) -> Loader:
    """A loader reading every ``chatops-app`` and ``chatops-environment`` block and every lock
    via ``client``: three Prefect API calls while there are at most
    :data:`blocks.documents.PAGE_SIZE` blocks."""

    async def load() -> Snapshot:
        blocks = await _read_blocks(client, {APP_SLUG: App, ENVIRONMENT_SLUG: Environment})
        locks = await read_locks(client)
        freezes = await read_freezes(client)
        return Snapshot(
            MappingProxyType(blocks[APP_SLUG]),
            MappingProxyType(blocks[ENVIRONMENT_SLUG]),
            MappingProxyType({lock_name(lk.app, lk.environment): lk for lk in locks}),
            time.monotonic(),
            MappingProxyType({f.environment: f for f in freezes}),
        )

    return load


async def _read_blocks(client: PrefectClient, kinds: Mapping[str, type]) -> dict[str, dict]:
    """Every named block of the types ``kinds`` (block type slug → class), by slug and name,
    read without secrets in one query per page; a type never saved yet is simply empty."""
    found: dict[str, dict[str, Any]] = {slug: {} for slug in kinds}
    offset = 0
    while True:
        query = documents_query(kinds, offset)
        page = (await client.request("POST", DOCUMENTS_FILTER, json=query)).json()
        for document in page:
            slug, name = document["block_type"]["slug"], document["name"]
            try:
                # model_validate, not Block.load: no "block loaded" event per refresh.
                found[slug][name] = kinds[slug].model_validate(document["data"])
            except ValidationError:
                logger.warning("Skipping block %s/%s: it does not validate", slug, name)
        if len(page) < query["limit"]:
            return found
        offset += len(page)


async def read_locks(client: PrefectClient) -> list[Lock]:
    """Every lock (Prefect Variables tagged ``chatops-lock``), sorted by app and environment."""
    response = await client.request("POST", "/variables/filter", json=LOCKS_QUERY)
    return locks_from(response.json())


async def read_freezes(client: PrefectClient) -> list[Freeze]:
    """Every freeze (Prefect Variables tagged ``chatops-freeze``), by environment."""
    response = await client.request("POST", "/variables/filter", json=FREEZES_QUERY)
    return freezes_from(response.json())
