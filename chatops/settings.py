"""Where chatops-deploy keeps its state, read from the environment.

``CHATOPS_HOME`` (default ``~/.chatops``) holds the git mirrors, the artifact cache, build work
trees and, for ``chatops up``, the Prefect server's SQLite database.
"""

import os
from dataclasses import dataclass
from pathlib import Path

DEPLOYMENT_NAME = "deploy/chatops"
"""The Prefect deployment (``<flow>/<deployment>``) that the front door starts deploys with."""
ROLLBACK_DEPLOYMENT_NAME = "rollback/chatops"
"""The Prefect deployment that switches an environment back to a release it already has."""


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def mirrors(self) -> Path:
        return self.home / "mirrors"

    @property
    def artifacts(self) -> Path:
        return Path(os.environ.get("CHATOPS_ARTIFACT_CACHE", self.home / "artifacts"))

    @property
    def worktrees(self) -> Path:
        return self.home / "worktrees"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"


def paths() -> Paths:
    """The state directories, from ``CHATOPS_HOME`` as it is set right now."""
    return Paths(Path(os.environ.get("CHATOPS_HOME", Path.home() / ".chatops")).expanduser())
