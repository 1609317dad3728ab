"""The people who may use the ``chatops`` CLI: a name and the hash of their personal token.

``chatops users add NAME`` makes a token (32 random bytes), shows it once and keeps only its
SHA-256 here, with the name and when it was made, in ``$CHATOPS_HOME/users.json`` (mode 0600).
``chatops users remove NAME`` deletes the line: that token is refused from the next request on.
The gateway knows a CLI user by the token alone (:meth:`UserStore.who`) and reads the file again
whenever it changed (one ``stat`` per request), so neither needs a restart.

Standard library only: the CLI loads it without Prefect.
"""

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from adapters.files import file_lock
from model.errors import ChatopsError

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
TOKEN_PREFIX = "chatops_"
"""Every token starts with it, so a secret scanner (and a person) can tell what leaked."""

logger = logging.getLogger("chatops.users")


class UserError(ChatopsError):
    """A name that cannot be a user, or is taken or unknown; the message says which."""


@dataclass(frozen=True)
class User:
    """One CLI user: the name the gateway acts as, and when the token was made (UTC)."""

    name: str
    created: str


def check_name(name: str) -> str:
    """``name`` if it can be a user name: 1-32 of a-z 0-9 . _ -, starting with a letter or digit."""
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"{name!r} cannot be a user name: use 1-32 characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit (e.g. alice, j.doe)"
        )
    return name


def digest(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    """The users file: written by ``chatops users``, read by the gateway on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._hashes: dict[str, str] = {}

    # ------------------------------------------------------------------ the gateway's side
    def who(self, token: str) -> str | None:
        """The user whose token this is; None for an unknown, revoked or empty token."""
        if not token:
            return None
        self._reload_if_changed()
        sent = digest(token)
        found = None
        for known, name in self._hashes.items():  # every entry, in constant time each
            if hmac.compare_digest(known, sent):
                found = name
        return found

    def known(self) -> int:
        """How many users the gateway would accept a token of right now."""
        self._reload_if_changed()
        return len(self._hashes)

    def _reload_if_changed(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._seen, self._hashes = None, {}
            return
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen != self._seen:
            try:
                entries = self._read()
                hashes = {entry["sha256"]: name for name, entry in entries.items()}
            except (OSError, UserError, KeyError, TypeError, AttributeError) as exc:
                # Refuse everyone rather than guess (e.g. written by root, unreadable to us).
                logger.error(
                    "Cannot read the CLI users in %s (%s): refusing every token", self.path, exc
                )
                hashes = {}
            self._hashes, self._seen = hashes, seen

    # ------------------------------------------------------------------ the admin's side
    def users(self) -> list[User]:
        return [User(name, entry["created"]) for name, entry in sorted(self._read().items())]

    def add(self, name: str) -> str:
        """Make ``name`` a user; its new token (the only time it exists in clear)."""
        check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._changing() as entries:
            if name in entries:
                raise UserError(
                    f"{name} has a token already; `chatops users remove {name}` first "
                    "to give them a new one"
                )
            created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            entries[name] = {"sha256": digest(token), "created": created}
        return token

    def remove(self, name: str) -> None:
        """Revoke ``name``'s token."""
        with self._changing() as entries:
            if entries.pop(name, None) is None:
                known = ", ".join(sorted(entries)) or "none"
                raise UserError(f"there is no user {name!r} (users: {known})")

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, str]]]:
        """The entries, written back (atomically, mode 0600) after the block; one writer at a
        time, so two ``users add`` at once both count."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(self.path.with_name(self.path.name + ".lock"), 0o600):
            entries = self._read()
            yield entries
            self._write(entries)

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise UserError(f"{self.path} is not valid JSON ({exc})") from None
        return dict(data.get("users", {}))

    def _write(self, entries: dict[str, dict[str, str]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"users": entries}, out, indent=2, sort_keys=True)
            out.write("\n")
        tmp.replace(self.path)
