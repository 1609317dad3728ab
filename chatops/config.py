"""``chatops.yaml``: the version-controlled description of apps, environments and credentials.

``chatops config apply chatops.yaml`` validates the file and writes the Prefect blocks the flows
read (see :mod:`blocks`). The file is the source of truth: apps and environments it no longer
names are listed after applying, and removed with ``--prune``.

The file's keys are the blocks' own fields (same names, defaults, limits and descriptions: the
schema below is built from the block classes), except that

- the SSH settings of an environment sit under ``ssh:`` (``user``, ``port``, ``known_hosts``,
  ``host_key_policy``, ``connect_timeout``, ``private_key_env``), and
- secrets never live in the file: it names the environment variables that hold them
  (``token_env``, ``bot_token_env``, ``private_key_env``, and a notification's ``secret_env``
  and ``apprise_env``), and ``apply`` reads those. A notification target's secret is saved as
  a Prefect ``Secret`` block, ``<app>-<env>-notification-<n>``, which the target names.

docs/configuration.md documents every key; examples/chatops.yaml is a complete example.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import paramiko
import yaml
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)

from adapters import prefect_tls
from adapters.host_keys import host_keys_locked, keep_learned
from blocks import App, Environment, GitHubAccess, SlackAccess, environment_block_name
from blocks.app import NAME_PATTERN
from blocks.documents import saved_documents
from blocks.environment import EVENTS, Event, Notification, WebhookUrl
from model.errors import DeployError

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
EnvVar = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
SSH_KEYS = {
    "ssh_user": "user",
    "ssh_port": "port",
    "known_hosts": "known_hosts",
    "host_key_policy": "host_key_policy",
    "connect_timeout": "connect_timeout",
}
"""Environment block fields that the file groups under ``ssh:``, with their names there."""


def _known_hosts_line(line: str) -> str:
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
    except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError) as exc:
        raise ValueError(f"not a known_hosts line ({exc})") from None
    if entry is None:
        raise ValueError("not a known_hosts line: expected 'HOST KEYTYPE BASE64KEY'")
    return line


KnownHostsLine = Annotated[str, AfterValidator(_known_hosts_line)]


class ConfigError(DeployError, ValueError):
    """The configuration file cannot be applied; the message names the file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def fields_of(
    block: type[Block], names: Mapping[str, str] | None = None, *, skip: set[str] = frozenset()
) -> dict[str, Any]:
    """The block's fields (all, or ``names`` renamed) as ``create_model`` field definitions."""
    wanted = names or {n: n for n in block.model_fields if n not in skip}
    return {
        new: (block.model_fields[old].annotation, block.model_fields[old])
        for old, new in wanted.items()
    }


_ssh_fields = fields_of(Environment, SSH_KEYS)
_ssh_fields["known_hosts"] = (list[KnownHostsLine], _ssh_fields["known_hosts"][1])
SshConfig = create_model(
    "SshConfig",
    __base__=Strict,
    **_ssh_fields,
    private_key_env=(EnvVar, Field(description="Variable holding the private key text.")),
)


class AutoDeployConfig(Strict):
    """``auto_deploy: {branch: main, on: green}``: the block's ``auto_deploy_branch`` and
    ``auto_deploy_on``."""

    branch: str = Field(min_length=1, description="The branch that deploys here by itself.")
    on: Literal["push", "green"] | None = Environment.model_fields["auto_deploy_on"]

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare ``on:`` key as the boolean true: take it as ``on``."""
        if isinstance(data, dict) and True in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data


class NotificationConfig(Strict):
    """A notification target as the file writes it: its secrets named by variable."""

    webhook: WebhookUrl | None = Field(
        default=None, description=Notification.model_fields["webhook"].description
    )
    secret_env: EnvVar | None = Field(
        default=None, description="Variable holding the webhook's signing key."
    )
    apprise_env: EnvVar | None = Field(
        default=None, description="Variable holding an Apprise URL (it may hold a password)."
    )
    events: list[Event] = Field(
        default_factory=lambda: list(EVENTS),
        min_length=1,
        description=Notification.model_fields["events"].description,
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "NotificationConfig":
        if (self.webhook is None) == (self.apprise_env is None):
            raise ValueError("give either webhook (with secret_env) or apprise_env")
        if self.webhook is not None and self.secret_env is None:
            raise ValueError("a webhook needs secret_env, the variable holding its signing key")
        return self


EnvironmentConfig = create_model(
    "EnvironmentConfig",
    __base__=Strict,
    **fields_of(
        Environment, skip={*SSH_KEYS, "ssh_private_key", "auto_deploy_on", "notifications"}
    ),
    ssh=(SshConfig, Field(description="How to log in to the hosts.")),
    auto_deploy=(
        AutoDeployConfig | None,
        Field(
            default=None,
            description="Which branch deploys here by itself, and when (on: push or green); "
            "auto_deploy_branch: NAME is the older spelling of {branch: NAME}.",
        ),
    ),
    notifications=(
        list[NotificationConfig],
        Field(
            default_factory=list, description=Environment.model_fields["notifications"].description
        ),
    ),
)

AppConfig = create_model(
    "AppConfig",
    __base__=Strict,
    **fields_of(App, skip={"environments"}),
    environments=(dict[Name, EnvironmentConfig], Field(min_length=1)),
)


class GitHubConfig(Strict):
    api_url: str = GitHubAccess.model_fields["api_url"].default
    token_env: EnvVar = "CHATOPS_GITHUB_TOKEN"


class SlackConfig(Strict):
    api_url: str = SlackAccess.model_fields["api_url"].default
    bot_token_env: EnvVar = "CHATOPS_SLACK_BOT_TOKEN"


class ConfigFile(Strict):
    github: GitHubConfig | None = None
    slack: SlackConfig | None = None
    apps: dict[Name, AppConfig] = Field(min_length=1)


@dataclass
class Applied:
    """What ``apply`` did: blocks saved, blocks the file no longer names (kept or removed)."""

    saved: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    learned_kept: dict[str, int] = field(default_factory=dict)
    """Environment block name → how many learned host keys (accept-new) it kept."""

    def describe(self) -> str:
        lines = [f"saved {name}" for name in self.saved]
        lines += [
            f"kept {count} learned host key(s) in {name} (host_key_policy: accept-new)"
            for name, count in self.learned_kept.items()
        ]
        lines += [f"removed {name} (not in the file)" for name in self.removed]
        if self.stale:
            lines.append(
                "not in the file, kept (chatops config apply --prune removes them): "
                + ", ".join(self.stale)
            )
        return "\n".join(lines)


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
    for name, app in config.apps.items():
        if app.default_environment and app.default_environment not in app.environments:
            raise ConfigError(
                f"{path}: apps.{name}.default_environment: "
                f"{app.default_environment!r} is not one of its environments"
            )
    return config


def secret(path: Path, key: str, variable: str, environ: Mapping[str, str]) -> str:
    value = environ.get(variable, "")
    if not value.strip():
        raise ConfigError(f"{path}: {key}: environment variable {variable} is not set")
    return value


def environment_block(
    path: Path, key: str, env: BaseModel, environ: Mapping[str, str], name: str = ""
) -> Environment:
    """The Environment block ``name`` (``<app>-<env>``) the file's entry ``key`` describes."""
    ssh = env.ssh
    settings = env.model_dump(exclude={"ssh", "auto_deploy", "notifications"})
    if env.auto_deploy is not None:
        if env.auto_deploy_branch is not None:
            raise ConfigError(
                f"{path}: {key}: auto_deploy and auto_deploy_branch both name a branch; "
                "keep auto_deploy"
            )
        settings.update(
            auto_deploy_branch=env.auto_deploy.branch, auto_deploy_on=env.auto_deploy.on
        )
    settings.update({old: getattr(ssh, new) for old, new in SSH_KEYS.items()})
    key_text = secret(path, f"{key}.ssh.private_key_env", ssh.private_key_env, environ)
    notifications = [
        notification(target, notification_secret_name(name, number))
        for number, target in enumerate(env.notifications, start=1)
    ]
    return Environment(**settings, ssh_private_key=key_text, notifications=notifications)


def notification_secret_name(environment_block: str, number: int) -> str:
    """The Secret block of an environment's ``number``-th notification target."""
    return f"{environment_block}-notification-{number}"


def notification(target: NotificationConfig, secret_name: str) -> Notification:
    """A notification target as the block keeps it: its secret named, not included."""
    if target.webhook is not None:
        return Notification(
            webhook=target.webhook, webhook_secret=secret_name, events=target.events
        )
    return Notification(apprise_secret=secret_name, events=target.events)


def notification_secrets(
    path: Path, key: str, env: BaseModel, environ: Mapping[str, str], name: str
) -> dict[str, Block]:
    """The Secret blocks of an environment's notification targets (``secret/<name>``), their
    values read from the variables the file names."""
    found: dict[str, Block] = {}
    for number, target in enumerate(env.notifications, start=1):
        where = f"{key}.notifications.{number - 1}"
        if target.webhook is not None:
            value = secret(path, f"{where}.secret_env", str(target.secret_env), environ)
        else:
            value = secret(path, f"{where}.apprise_env", str(target.apprise_env), environ)
        found[f"secret/{notification_secret_name(name, number)}"] = Secret(value=value)
    return found


def build_blocks(
    path: Path, config: ConfigFile, environ: Mapping[str, str] | None = None
) -> dict[str, Block]:
    """Every block the file describes, by ``<slug>/<name>``; secrets read from ``environ``."""
    environ = os.environ if environ is None else environ
    blocks: dict[str, Block] = {}
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
            block_name = environment_block_name(name, env_name)
            blocks[f"chatops-environment/{block_name}"] = environment_block(
                path, key, env, environ, block_name
            )
            blocks.update(notification_secrets(path, key, env, environ, block_name))
    return blocks


def saved_names() -> dict[str, str]:
    """``<slug>/<name>`` → block document id, of every app and environment block saved."""
    with get_client(sync_client=True) as client:
        slugs = [App.get_block_type_slug(), Environment.get_block_type_slug()]
        documents = saved_documents(client, slugs)
        return {f"{d['block_type']['slug']}/{d['name']}": str(d["id"]) for d in documents}


def save_environment(name: str, block: Environment) -> int:
    """Save the environment as the file describes it, plus the host keys it learned that the
    file does not replace (see :func:`adapters.host_keys.keep_learned`); return how many it kept.

    Under the host-keys lock, so a key a running deploy learns at the same moment is neither
    lost nor saved over the new settings.
    """
    with host_keys_locked():
        try:
            saved = Environment.load(name)
        except (ValueError, ObjectNotFound):
            saved = None
        kept = keep_learned(saved, block)
        block.known_hosts = [*block.known_hosts, *kept]
        block.save(name, overwrite=True)
    return len(kept)


def apply(
    path: Path | str, environ: Mapping[str, str] | None = None, prune: bool = False
) -> Applied:
    """Validate ``path`` and save its blocks (overwriting); list (or, ``prune``, remove) the
    apps and environments it no longer names.

    Nothing is saved unless the whole file is valid and every secret is set.
    """
    path = Path(path)
    blocks = build_blocks(path, load(path), environ)
    prefect_tls.share()  # each block saved makes a Prefect client
    applied = Applied()
    # Environments before their apps: an app never names an environment that is not saved yet.
    for slug_and_name, block in sorted(
        blocks.items(), key=lambda item: not isinstance(item[1], Environment)
    ):
        name = slug_and_name.split("/", 1)[1]
        if isinstance(block, Environment):
            kept = save_environment(name, block)
            if kept:
                applied.learned_kept[name] = kept
        else:
            block.save(name, overwrite=True)
        applied.saved.append(slug_and_name)
    stale = {name: doc for name, doc in saved_names().items() if name not in blocks}
    if not prune:
        applied.stale = sorted(stale)
        return applied
    with get_client(sync_client=True) as client:
        for name, document_id in sorted(stale.items()):
            client.delete_block_document(document_id)
            applied.removed.append(name)
    return applied
