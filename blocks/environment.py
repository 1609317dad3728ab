"""The ``Environment`` block: the hosts of one app's environment and how to run it there."""

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class Environment(Block):
    """Where and how one app runs in one environment (staging, production, ...).

    Hosts are ``name`` or ``name:port``. Releases go to ``<deploy_path>/releases/<id>/`` and
    ``<deploy_path>/current`` points at the live one.
    """

    _block_type_name = "ChatOps Environment"
    _block_type_slug = "chatops-environment"
    _description = "The SSH hosts of one app environment, its restart and health check."

    hosts: list[str] = Field(description="SSH hosts, as name or name:port.")
    ssh_user: str = Field(default="deploy", description="User the deploy logs in as.")
    ssh_port: int = Field(default=22, description="SSH port for hosts given without one.")
    ssh_private_key: SecretStr = Field(description="Private key (OpenSSH or PEM text).")
    known_hosts: list[str] = Field(
        default_factory=list,
        description="Pinned host keys, known_hosts lines. When set, any other host key is refused.",
    )
    connect_timeout: float = Field(default=10, description="Seconds to wait for SSH to connect.")
    command_timeout: float = Field(
        default=300, description="Seconds a remote command (restart, task) may run."
    )
    deploy_path: str = Field(description="Directory on the hosts that holds releases/ and current.")
    restart_command: str = Field(
        description="Command run in <deploy_path>/current after the switch, e.g. a service restart."
    )
    health_url: str | None = Field(
        default=None,
        description="URL checked after restart; {host} is replaced by the host name. "
        "It must answer 200 with the deployed git sha in the body.",
    )
    health_timeout: float = Field(default=120, description="Seconds a host has to become healthy.")
    batch_size: int = Field(default=1, ge=1, description="Hosts switched and restarted at once.")
    keep_releases: int = Field(default=5, ge=2, description="Releases kept on each host.")
    url: str | None = Field(default=None, description="Public URL of the environment.")
    production: bool = Field(default=False, description="Whether this is a production environment.")
    required_contexts: list[str] | None = Field(
        default=None,
        description="Commit statuses GitHub must see green before deploying; unset means all.",
    )
    allowed_users: list[str] = Field(
        default_factory=list, description="Slack user ids allowed to deploy; empty means everyone."
    )
    allowed_channels: list[str] = Field(
        default_factory=list, description="Slack channel ids deploys may come from; empty: all."
    )
    auto_deploy_branch: str | None = Field(
        default=None, description="Branch whose pushes deploy here automatically."
    )
