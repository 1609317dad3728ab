"""The ``App`` block: one deployable application and how to build it."""

import os
from typing import Annotated

from prefect.blocks.core import Block
from pydantic import Field, StringConstraints

from blocks.schema import SchemaOnce
from model.errors import UnknownTarget, unknown

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""App, environment and task names: what the chat grammar accepts, and safe everywhere."""
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
GITHUB_WEB_URL = "https://github.com"
"""Where people browse GitHub when no Enterprise server is configured."""
DEPLOY_TASK = "deploy"
"""The task of a plain deploy; any other task name is one of the app's custom ``tasks``."""


class App(SchemaOnce, Block):
    """A repository that builds into one artifact and deploys to named environments.

    Saved under the app's name (``App(...).save("shop")``); each name in ``environments`` has an
    ``Environment`` block saved as ``<app>-<environment>``.
    """

    _block_type_name = "ChatOps App"
    _block_type_slug = "chatops-app"
    _description = "A deployable application: its repository, build and environments."

    repository: str = Field(
        description="GitHub repository as owner/name, e.g. acme/shop.",
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
    )
    clone_url: str | None = Field(
        default=None,
        description="Where to fetch the code from; defaults to the GitHub repository over HTTPS.",
    )
    default_ref: str = Field(default="main", description="Ref deployed when none is given.")
    default_environment: Name | None = Field(
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
    build_env: list[EnvVarName] = Field(
        default_factory=list,
        description=(
            "Names of variables of the runner's environment the build also sees, besides PATH, "
            "LANG, JAVA_HOME, MAVEN_OPTS, GIT_COMMIT and the build user's HOME, USER and "
            "LOGNAME; every build of every branch sees them, so never list a secret."
        ),
    )
    build_timeout: float = Field(
        default=1200,
        gt=0,
        description=(
            "Seconds a build may take; past that it is stopped with every process it started "
            "and the deploy fails, saying so."
        ),
    )
    environments: list[Name] = Field(
        default_factory=list, description="Names of the environments this app deploys to."
    )
    tasks: dict[Name, str] = Field(
        default_factory=dict,
        description="Custom deploy tasks (deploy:NAME): command run on each host before restart.",
    )

    @property
    def default_clone_url(self) -> str:
        """Where git fetches from; a leading ``~`` is the home of the user running deploys."""
        return self.clone_url_on(GITHUB_WEB_URL)

    def clone_url_on(self, web_url: str) -> str:
        """Where git fetches from when the repository lives on the GitHub at ``web_url``
        (github.com, or an Enterprise server's host): ``clone_url`` if set, else the repository
        there over HTTPS.

        >>> App(repository="acme/shop").clone_url_on("https://ghe.example.net")
        'https://ghe.example.net/acme/shop.git'
        """
        if self.clone_url and self.clone_url.startswith("~"):
            return os.path.expanduser(self.clone_url)
        return self.clone_url or f"{web_url.rstrip('/')}/{self.repository}.git"

    def environment_name(self, app: str, wanted: str | None) -> str:
        """The environment ``wanted`` names, or the default one; never a guess at production."""
        if wanted is None:
            if self.default_environment is None:
                raise unknown_default(app, self.environments)
            return self.default_environment
        if wanted not in self.environments:
            raise unknown("environment", wanted, self.environments, owner=app)
        return wanted

    def task_command(self, app: str, task: str) -> str | None:
        """The command of custom task ``task`` (None for a plain deploy)."""
        if task == DEPLOY_TASK:
            return None
        if task not in self.tasks:
            raise unknown("deploy task", task, [DEPLOY_TASK, *self.tasks], owner=app)
        return self.tasks[task]


def environment_block_name(app: str, environment: str) -> str:
    """Name of the ``Environment`` block that configures ``environment`` of ``app``."""
    return f"{app}-{environment}"


def unknown_default(app: str, environments: list[str]) -> UnknownTarget:
    """The answer when a command names no environment and the app has no default."""
    example = environments[0] if environments else "ENV"
    return UnknownTarget(
        f"which environment? {app} deploys to: {', '.join(environments) or 'nothing yet'} "
        f"(e.g. `{app} to {example}`)."
    )
