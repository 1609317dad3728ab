"""Where locks and freezes live: Prefect Variables, so the Prefect UI (Variables page) shows
every one and an operator can remove one there.

A lock is the Variable ``lock-<app>-<environment>`` holding the :class:`~model.locks.Lock`'s
fields (``dataclasses.asdict``: app, environment, by, message, at, via), tagged
``chatops-lock``; a freeze the Variable ``freeze-<environment>``, tagged ``chatops-freeze``.
``by`` is who took it: a Slack user id, or the CLI user of the token when ``via`` is ``cli``.

The gateway takes and releases them (:mod:`chatops.locks`) and refuses requests against them at
once; the deploy and rollback flows read them again before they touch anything, so a run
started any other way (the CLI, "Run" in the Prefect UI) is held to them too.
"""

from typing import Any

from prefect.client.orchestration import get_client

from model.locks import Freeze, Lock

LOCK_TAG = "chatops-lock"
LOCK_PREFIX = "lock-"
FREEZE_TAG = "chatops-freeze"
FREEZE_PREFIX = "freeze-"


def lock_name(app: str, environment: str) -> str:
    """The Prefect Variable name of a lock (app and environment names are ``[a-z0-9-]``)."""
    return f"{LOCK_PREFIX}{app}-{environment}"


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
