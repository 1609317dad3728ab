"""Where chatops-deploy keeps its state on this machine: ``CHATOPS_HOME`` (default ``~/.chatops``).

::

    $CHATOPS_HOME/mirrors/      one bare git mirror per repository
    $CHATOPS_HOME/worktrees/    a clean work tree per build, removed after it
    $CHATOPS_HOME/artifacts/    built artifacts by commit (CHATOPS_ARTIFACT_CACHE: shared storage)
    $CHATOPS_HOME/prefect/      the Prefect server's database when ``chatops up`` runs it
    $CHATOPS_HOME/intake.db     requests the gateway accepted, until they are runs
    $CHATOPS_HOME/up.json       where the running ``chatops up`` can be reached

Read from the environment on every call, so a test or a worker can point it elsewhere.
"""

import os
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


def home() -> Home:
    """The state directories, from ``CHATOPS_HOME`` as it is set right now."""
    return Home(Path(os.environ.get("CHATOPS_HOME", Path.home() / ".chatops")).expanduser())
