"""The ``App`` block: one deployable application and how to build it."""

from prefect.blocks.core import Block
from pydantic import Field


class App(Block):
    """A repository that builds into one artifact and deploys to named environments.

    Saved under the app's name (``App(...).save("shop")``); each name in ``environments`` has an
    ``Environment`` block saved as ``<app>-<environment>``.
    """

    _block_type_name = "ChatOps App"
    _block_type_slug = "chatops-app"
    _description = "A deployable application: its repository, build and environments."

    repository: str = Field(description="GitHub repository as owner/name, e.g. acme/shop.")
    clone_url: str | None = Field(
        default=None,
        description="Where to fetch the code from; defaults to the GitHub repository over HTTPS.",
    )
    default_ref: str = Field(default="main", description="Ref deployed when none is given.")
    default_environment: str | None = Field(
        default=None,
        description="Environment used when a command names none; unset means the user must say.",
    )
    build_command: str = Field(
        default="mvn -B clean package", description="Shell command that builds the artifact."
    )
    artifact_glob: str = Field(
        default="target/*.war",
        description="Glob, relative to the work tree, that must match exactly one built file.",
    )
    environments: list[str] = Field(
        default_factory=list, description="Names of the environments this app deploys to."
    )
    tasks: dict[str, str] = Field(
        default_factory=dict,
        description="Custom deploy tasks (deploy:NAME): command run on each host before restart.",
    )

    def environment_block_name(self, environment: str) -> str:
        """Name of the ``Environment`` block that configures ``environment`` for this app."""
        return f"{self._block_document_name}-{environment}"

    @property
    def default_clone_url(self) -> str:
        return self.clone_url or f"https://github.com/{self.repository}.git"
