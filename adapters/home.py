"""Where chatops-deploy keeps its state on this machine: ``CHATOPS_HOME`` (default ``~/.chatops``).

::

    $CHATOPS_HOME/mirrors/      one bare git mirror per repository
    $CHATOPS_HOME/worktrees/    a clean work tree per build, removed after it
    $CHATOPS_HOME/artifacts/    built artifacts by commit (CHATOPS_ARTIFACT_CACHE: shared storage)
    $CHATOPS_HOME/prefect/      the Prefect server's database when ``chatops up`` runs it
    $CHATOPS_HOME/intake.db     requests the gateway accepted, until they are runs
    $CHATOPS_HOME/up.json       where the running ``chatops up`` can be reached
    $CHATOPS_HOME/users.json    the CLI users and the hashes of their tokens (mode 0600)
    $CHATOPS_HOME/secrets/      keys the system makes for itself (mode 0600, :meth:`Home.secret`)

The directory is the deploy system's alone (mode 0700): a build runs as another user and can
read nothing here. Read from the environment on every call, so a test or a worker can point it
elsewhere.
"""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    """The state directories below one ``CHATOPS_HOME``."""

    root: Path

    @property
    def mirrors(self) -> Path:
        return self.root / "mirrors"

    @property
    def worktrees(self) -> Path:
        return self.root / "worktrees"

    @property
    def artifacts(self) -> Path:
        return Path(os.environ.get("CHATOPS_ARTIFACT_CACHE", self.root / "artifacts"))

    @property
    def prefect(self) -> Path:
        return self.root / "prefect"

    @property
    def intake(self) -> Path:
        return self.root / "intake.db"

    @property
    def up_file(self) -> Path:
        return self.root / "up.json"

    @property
    def users(self) -> Path:
        """The CLI users and their tokens' hashes (:mod:`chatops.users`)."""
        return self.root / "users.json"

    def ensure(self) -> "Home":
        """Create the directory, readable by this user alone; return self."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        return self

    def secret(self, name: str, create: bool = False) -> str:
        """The secret ``secrets/<name>`` (mode 0600), made of 32 random bytes (hex) on first use
        when ``create``; "" when it does not exist."""
        path = self.root / "secrets" / name
        if create and not path.exists():
            self.ensure()
            path.parent.mkdir(mode=0o700, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # made meanwhile by another process
                pass
            else:
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32) + "\n")
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            return ""


def home() -> Home:
    """The state directories, from ``CHATOPS_HOME`` as it is set right now."""
    return Home(Path(os.environ.get("CHATOPS_HOME", Path.home() / ".chatops")).expanduser())
