"""What a request points at, and the one rule for who may change it.

A :class:`Target` is one app environment as the configuration knows it. The gateway resolves
one from its in-memory copy of the configuration to refuse at once; the run resolves one again
from Prefect, the check that holds for every entry point. Both ask :func:`check_access`, each
with the lock and freeze it read::

    >>> from model.locks import Lock
    >>> class Open:
    ...     def refusal(self, *asked): return None
    >>> shop = Target("shop", None, "staging", Open(), ref="main")
    >>> check_access(shop, "U1", "slack", "C1", lock=None, freeze=None)
    >>> check_access(shop, "U1", "slack", "C1", freeze=None,
    ...              lock=Lock("shop", "staging", "U2", None, "", "slack"))
    Traceback (most recent call last):
    model.locks.EnvironmentLocked: shop staging is locked by U2 (slack). Ask U2 to unlock it, ...
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from model.errors import DeployFailure
from model.locks import EnvironmentFrozen, EnvironmentLocked, Freeze, Lock

if TYPE_CHECKING:
    from blocks import App, Environment


@dataclass(frozen=True)
class Target:
    """One app environment, resolved: its blocks, the ref asked for (None: the app's default),
    the hosts to deploy to, and the custom task's command (None: a plain deploy)."""

    app_name: str
    app: "App"
    environment_name: str
    environment: "Environment"
    ref: str | None = None
    hosts: list[str] = field(default_factory=list)
    task_command: str | None = None


class NotAllowed(DeployFailure, RuntimeError):
    """The requester may not deploy here: the environment's ``list_name`` allow-list
    (``allowed_users``, ``allowed_channels``, ``cli_users``) does not name them, or (with only a
    message) the environment takes no runs of this kind."""

    def __init__(
        self,
        message: str = "",
        *,
        app: str = "",
        environment: str = "",
        user: str = "",
        list_name: str = "",
        allowed: Sequence[str] = (),
    ) -> None:
        self.app, self.environment, self.user = app, environment, user
        self.list_name, self.allowed = list_name, list(allowed)
        super().__init__(message or self._plain())

    def _plain(self) -> str:
        allowed = ", ".join(self.allowed)
        if self.list_name == "allowed_channels":
            return f"Deploys of {self.app} to {self.environment} are only done from {allowed}."
        if self.list_name == "cli_users":
            return (
                f"You ({self.user}) may not deploy {self.app} to {self.environment} from the "
                f"terminal. Allowed: {allowed}."
            )
        return f"You may not deploy {self.app} to {self.environment}. Allowed: {allowed}."


def check_access(
    target: Target,
    user: str | None,
    via: str,
    channel: str | None,
    *,
    lock: Lock | None,
    freeze: Freeze | None,
    rollback: bool = False,
) -> None:
    """Raise unless ``user`` (asking through ``via`` from ``channel``) may change ``target``:
    its allow-lists name them (:class:`NotAllowed`), it is not frozen unless this is a
    ``rollback`` (:class:`EnvironmentFrozen`), and nobody else holds its lock
    (:class:`EnvironmentLocked`; a forced deploy does not pass a lock either)."""
    refusal = target.environment.refusal(
        target.app_name, target.environment_name, via, user or "", channel
    )
    if refusal is not None:
        raise refusal
    if freeze is not None and not rollback:
        raise EnvironmentFrozen(freeze)
    if lock is not None and lock.stops(user or None, via):
        raise EnvironmentLocked(lock)
