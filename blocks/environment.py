"""The ``Environment`` block: the hosts of one app's environment and how to run it there."""

import re
from typing import Annotated, Literal

from prefect.blocks.core import Block
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from blocks.schema import SchemaOnce
from model.errors import UnknownTarget
from model.target import NotAllowed

VIA_SLACK, VIA_CLI, VIA_GITHUB, VIA_UI = "slack", "cli", "github", "ui"
"""Where a request came from; allow-lists are kept per source."""

AUTO_ON_PUSH, AUTO_ON_GREEN = "push", "green"
"""When an auto-deploy branch deploys: each pushed commit, or its head once CI is green."""

STRICT, ACCEPT_NEW = "strict", "accept-new"
"""Host key policies: refuse a host key known_hosts does not pin, or learn a host's first key."""

HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+(:[0-9]{1,5})?$")]


def _only_host_placeholder(url: str | None) -> str | None:
    if url is not None and re.search(r"\{(?!host\})[^}]*\}", url):
        raise ValueError("only the {host} placeholder is allowed")
    return url


HealthUrl = Annotated[
    Annotated[str, StringConstraints(pattern=r"^https?://")] | None,
    AfterValidator(_only_host_placeholder),
]


EVENTS = ("started", "succeeded", "failed", "rolled_back")
"""What a notification target can be told: a deploy or rollback started, a deploy succeeded,
a deploy or rollback failed, a rollback succeeded."""
Event = Literal["started", "succeeded", "failed", "rolled_back"]
WebhookUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]


SecretName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")]


class Notification(BaseModel):
    """One place told about an environment's deploys: a signed JSON webhook or an Apprise URL
    (``mailto://`` e-mail and the other services Apprise knows).

    Its secret (the webhook's signing key, or the Apprise URL, which may hold a password) is
    not in this block: it is a Prefect ``Secret`` block named here, which only the flows read.
    (Prefect hides secret fields of a block, but not inside a list.)
    """

    webhook: WebhookUrl | None = Field(
        default=None,
        description="URL that gets each event as JSON (POST), signed with the key in the "
        "Secret block webhook_secret: header X-Chatops-Signature: sha256=<HMAC-SHA256 of the "
        "body, hex>.",
    )
    webhook_secret: SecretName | None = Field(
        default=None, description="Name of the Prefect Secret block holding the webhook's key."
    )
    apprise_secret: SecretName | None = Field(
        default=None,
        description="Name of the Prefect Secret block holding an Apprise URL the event goes to "
        "as a title and a text, e.g. mailtos://user:password@smtp.example.net?to=qa@example.net.",
    )
    events: list[Event] = Field(
        default_factory=lambda: list(EVENTS),
        min_length=1,
        description="Events sent here: started, succeeded, failed, rolled_back (default: all).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "Notification":
        if (self.webhook is None) == (self.apprise_secret is None):
            raise ValueError("give either webhook (with webhook_secret) or apprise_secret")
        if self.webhook is not None and not self.webhook_secret:
            raise ValueError("a webhook needs webhook_secret, the Secret block of its key")
        return self

    @property
    def secret_block(self) -> str:
        """The name of the Secret block this target needs."""
        return str(self.webhook_secret if self.webhook is not None else self.apprise_secret)


class Environment(SchemaOnce, Block):
    """Where and how one app runs in one environment (staging, production, ...).

    Hosts are ``name`` or ``name:port``. Releases go to ``<deploy_path>/releases/<id>/`` and
    ``<deploy_path>/current`` points at the live one.
    """

    _block_type_name = "ChatOps Environment"
    _block_type_slug = "chatops-environment"
    _description = "The SSH hosts of one app environment, its restart and health check."

    hosts: list[HostName] = Field(description="SSH hosts, as name or name:port.", min_length=1)
    ssh_user: str = Field(default="deploy", description="User the deploy logs in as.")
    ssh_port: int = Field(
        default=22, ge=1, le=65535, description="SSH port for hosts given without one."
    )
    ssh_private_key: SecretStr = Field(description="Private key (OpenSSH or PEM text).")
    known_hosts: list[str] = Field(
        default_factory=list,
        description="Pinned host keys, known_hosts lines; any other host key is refused. With "
        "host_key_policy accept-new, the first key each host presents is added here.",
    )
    host_key_policy: Literal["strict", "accept-new"] = Field(
        default=STRICT,
        description="A host whose key known_hosts does not pin: 'strict' refuses to connect "
        "and says which line to add; 'accept-new' stores the first key it presents in "
        "known_hosts and refuses any other key after that.",
    )
    connect_timeout: float = Field(
        default=10,
        gt=0,
        description="Seconds to wait for SSH to connect; also how long a stalled transfer may "
        "stay silent before it fails.",
    )
    command_timeout: float = Field(
        default=300,
        gt=0,
        description="Seconds a remote command (restart, task) may run; on expiry its process "
        "group is killed on the host.",
    )
    min_upload_rate: int = Field(
        default=262144,
        gt=0,
        description="Bytes per second an upload must at least reach; a slower one fails after "
        "2 x connect_timeout + size / min_upload_rate seconds.",
    )
    deploy_path: str = Field(
        description="Directory on the hosts that holds releases/ and current.",
        pattern=r"^/[A-Za-z0-9._/-]*$",
    )
    restart_command: str = Field(
        min_length=1,
        description="Command run in <deploy_path>/current after the switch, e.g. a service "
        "restart.",
    )
    health_url: HealthUrl = Field(
        default=None,
        description="URL checked after restart; {host} is replaced by the host name. "
        "It must answer 200 with the deployed git sha in the body.",
    )
    health_timeout: float = Field(
        default=120, gt=0, description="Seconds a host has to become healthy."
    )
    run_timeout: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Seconds a deploy or rollback may run once it holds the environment's slot; past "
            "that it fails, switched hosts go back, and the run says so. Empty: the app's "
            "build_timeout plus 30 minutes."
        ),
    )
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
    cli_users: list[str] = Field(
        default_factory=list,
        description="CLI users (chatops users add NAME) allowed to deploy with the chatops CLI; "
        "the gateway takes the name from the person's token. Empty: every CLI user.",
    )
    auto_deploy_branch: str | None = Field(
        default=None, description="Branch whose pushes deploy here automatically."
    )
    auto_deploy_on: Literal["push", "green"] | None = Field(
        default=None,
        description="When auto_deploy_branch deploys: 'push' deploys each pushed commit at "
        "once; 'green' deploys the branch's head once its required checks are all successful "
        "(required_contexts, else GitHub's required checks of the branch). Unset: 'green' when "
        "required_contexts names checks, else 'push'.",
    )
    slack_channel: str | None = Field(
        default=None,
        description="Slack channel id where deploys no one asked for in Slack (deploy on green) "
        "are announced, and a red required check of the auto-deploy branch gets one line.",
    )
    confirm: bool = Field(
        default=False,
        description="Whether a deploy asked for in Slack or the CLI first shows what would "
        "change and waits for its requester to confirm (Slack: a Deploy button; CLI: y/N or "
        "--yes). GitHub events, pull request comments, UI runs and rollbacks are not asked.",
    )
    notifications: list[Notification] = Field(
        default_factory=list,
        description="Where to report deploys and rollbacks here besides Slack and GitHub: "
        "signed JSON webhooks and Apprise URLs (e-mail, ...), each for the events it lists.",
    )
    allow_ui_runs: bool | None = Field(
        default=None,
        description="Whether runs started in the Prefect UI or API (not signed by the gateway) "
        "may deploy here, as 'prefect-ui', never forced. Unset: yes, unless the environment is "
        "production or lists allowed_users or cli_users.",
    )

    def ui_runs_allowed(self) -> bool:
        """Whether an anonymous run (Prefect UI or API) may deploy here; see ``allow_ui_runs``."""
        if self.allow_ui_runs is not None:
            return self.allow_ui_runs
        return not (self.production or self.allowed_users or self.cli_users)

    def auto_deploys_on(self) -> str | None:
        """When ``auto_deploy_branch`` deploys (``push`` or ``green``); None without one.

        >>> Environment.model_construct(auto_deploy_branch="main").auto_deploys_on()
        'push'
        >>> Environment.model_construct(auto_deploy_branch="main", required_contexts=["ci"]
        ...     ).auto_deploys_on()
        'green'
        """
        if not self.auto_deploy_branch:
            return None
        if self.auto_deploy_on is not None:
            return self.auto_deploy_on
        return AUTO_ON_GREEN if self.required_contexts else AUTO_ON_PUSH

    def select_hosts(self, app: str, environment: str, wanted: list[str] | None) -> list[str]:
        """The hosts a request touches: all of them, or those named (in configured order)."""
        if not wanted:
            return list(self.hosts)
        strangers = [h for h in wanted if h not in self.hosts]
        if strangers:
            raise UnknownTarget(
                f"{app} {environment} has no host {', '.join(strangers)}. "
                f"Its hosts: {', '.join(self.hosts)}."
            )
        return [h for h in self.hosts if h in wanted]

    def refusal(
        self, app: str, environment: str, via: str, user: str, channel: str | None
    ) -> NotAllowed | None:
        """Why ``user`` (asking through ``via``) may not deploy here, or None if they may.

        Slack requests are checked against ``allowed_users`` and ``allowed_channels``, CLI
        requests against ``cli_users``. GitHub events are not: GitHub decides who may create a
        deployment. Runs started in the Prefect UI are not either; ``allow_ui_runs`` says
        whether they may deploy here at all.
        """
        asked = {"app": app, "environment": environment, "user": user}
        if via == VIA_SLACK:
            if self.allowed_users and user not in self.allowed_users:
                return NotAllowed(list_name="allowed_users", allowed=self.allowed_users, **asked)
            if self.allowed_channels and channel not in self.allowed_channels:
                return NotAllowed(
                    list_name="allowed_channels", allowed=self.allowed_channels, **asked
                )
        if via == VIA_CLI and self.cli_users and user not in self.cli_users:
            return NotAllowed(list_name="cli_users", allowed=self.cli_users, **asked)
        return None
