"""``chatops.yaml``: the version-controlled description of apps, environments and credentials.

``chatops config apply chatops.yaml`` validates the file and writes the Prefect blocks the flows
read (see :mod:`blocks`). Secrets never live in the file: it names the environment variables that
hold them (``token_env``, ``private_key_env``...), and ``apply`` reads those at apply time.
docs/configuration.md documents every key; examples/chatops.yaml is a complete example.
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import paramiko
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from blocks import App, Environment, GitHubAccess, SlackAccess

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+(:[0-9]{1,5})?$")]
EnvVar = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
AbsolutePath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/-]*$")]


def _known_hosts_line(line: str) -> str:
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
    except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError) as exc:
        raise ValueError(f"not a known_hosts line ({exc})") from None
    if entry is None:
        raise ValueError("not a known_hosts line: expected 'HOST KEYTYPE BASE64KEY'")
    return line


KnownHostsLine = Annotated[str, AfterValidator(_known_hosts_line)]
_PLACEHOLDER = re.compile(r"\{(?!host\})[^}]*\}")


class ConfigError(ValueError):
    """The configuration file cannot be applied; the message names the file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SshConfig(Strict):
    user: str = "deploy"
    port: int = Field(default=22, ge=1, le=65535)
    private_key_env: EnvVar
    known_hosts: list[KnownHostsLine] = []
    connect_timeout: float = Field(default=10, gt=0)


class EnvironmentConfig(Strict):
    hosts: list[HostName] = Field(min_length=1)
    ssh: SshConfig
    deploy_path: AbsolutePath
    restart_command: str = Field(min_length=1)
    health_url: str | None = Field(default=None, pattern=r"^https?://")
    health_timeout: float = Field(default=120, gt=0)
    command_timeout: float = Field(default=300, gt=0)
    batch_size: int = Field(default=1, ge=1)
    keep_releases: int = Field(default=5, ge=2)
    url: str | None = None
    production: bool = False
    required_contexts: list[str] | None = None
    allowed_users: list[str] = []
    allowed_channels: list[str] = []
    auto_deploy_branch: str | None = None


class AppConfig(Strict):
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    clone_url: str | None = None
    default_ref: str = "main"
    default_environment: Name | None = None
    build_command: str = "mvn -B clean package"
    artifact_glob: str = "target/*.war"
    tasks: dict[Name, str] = {}
    environments: dict[Name, EnvironmentConfig] = Field(min_length=1)


class GitHubConfig(Strict):
    api_url: str = Field(default="https://api.github.com", pattern=r"^https?://")
    token_env: EnvVar = "CHATOPS_GITHUB_TOKEN"


class SlackConfig(Strict):
    api_url: str = Field(default="https://slack.com/api/", pattern=r"^https?://")
    bot_token_env: EnvVar = "CHATOPS_SLACK_BOT_TOKEN"


class ConfigFile(Strict):
    github: GitHubConfig | None = None
    slack: SlackConfig | None = None
    apps: dict[Name, AppConfig] = Field(min_length=1)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load(path: Path) -> ConfigFile:
    """Read and validate ``path``; :class:`ConfigError` says which key is wrong and why."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        config = ConfigFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        problems = [f"{path}: {_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(problems)) from None
    check_references(path, config)
    return config


def check_references(path: Path, config: ConfigFile) -> None:
    """Cross-key rules a schema cannot express."""
    for name, app in config.apps.items():
        if app.default_environment and app.default_environment not in app.environments:
            raise ConfigError(
                f"{path}: apps.{name}.default_environment: "
                f"{app.default_environment!r} is not one of its environments"
            )
        for env_name, env in app.environments.items():
            if env.health_url and _PLACEHOLDER.search(env.health_url):
                raise ConfigError(
                    f"{path}: apps.{name}.environments.{env_name}.health_url: "
                    "only the {host} placeholder is allowed"
                )


def secret(path: Path, key: str, variable: str, environ: Mapping[str, str]) -> str:
    value = environ.get(variable, "")
    if not value.strip():
        raise ConfigError(f"{path}: {key}: environment variable {variable} is not set")
    return value


def environment_block(
    path: Path, key: str, env: EnvironmentConfig, environ: Mapping[str, str]
) -> Environment:
    settings = env.model_dump(exclude={"ssh"})
    return Environment(
        **settings,
        ssh_user=env.ssh.user,
        ssh_port=env.ssh.port,
        ssh_private_key=secret(
            path, f"{key}.ssh.private_key_env", env.ssh.private_key_env, environ
        ),
        known_hosts=env.ssh.known_hosts,
        connect_timeout=env.ssh.connect_timeout,
    )


def build_blocks(
    path: Path, config: ConfigFile, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every block the file describes, by the name it is saved under; secrets read from env."""
    environ = os.environ if environ is None else environ
    blocks: dict[str, Any] = {}
    if config.github:
        token = secret(path, "github.token_env", config.github.token_env, environ)
        blocks["chatops-github/default"] = GitHubAccess(token=token, api_url=config.github.api_url)
    if config.slack:
        token = secret(path, "slack.bot_token_env", config.slack.bot_token_env, environ)
        blocks["chatops-slack/default"] = SlackAccess(bot_token=token, api_url=config.slack.api_url)
    for name, app in config.apps.items():
        settings = app.model_dump(exclude={"environments"})
        blocks[f"chatops-app/{name}"] = App(**settings, environments=list(app.environments))
        for env_name, env in app.environments.items():
            key = f"apps.{name}.environments.{env_name}"
            blocks[f"chatops-environment/{name}-{env_name}"] = environment_block(
                path, key, env, environ
            )
    return blocks


def apply(path: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """Validate ``path`` and save its blocks (overwriting); return the saved block names.

    Nothing is saved unless the whole file is valid and every secret is set.
    """
    blocks = build_blocks(path, load(path), environ)
    for slug_and_name, block in blocks.items():
        block.save(slug_and_name.split("/", 1)[1], overwrite=True)
    return list(blocks)
