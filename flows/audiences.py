"""Who hears of a deploy, each told in its own way by :class:`~flows.report.DeployReport`:
GitHub (deployment statuses and the pull request comment), the Slack card, and Prefect's record
of the run. None of them may fail or hide the deploy: what goes wrong telling them is logged,
with every secret of the run (:class:`Secrets`) redacted.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import runtime
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from slack_sdk import WebClient

from adapters import history, slack
from adapters.pull_request import PullRequestComment, edit_comment
from blocks import GitHubAccess, SlackAccess
from model.summary import CHANGE_LABEL, DeploySummary, change_label, run_tags
from render.pull_request import comment_markdown
from tasks.github import report_status


@dataclass(frozen=True)
class Notify:
    """Where the deploy's Slack message goes: a channel id, optionally inside a thread."""

    channel: str
    thread_ts: str | None = None


class Secrets:
    """Every secret a run knows (SSH key, tokens, notification URLs), to keep out of what it
    tells people."""

    def __init__(self, *secrets: str) -> None:
        self.values = [s for s in secrets if s]

    def add(self, secret: str) -> None:
        if secret:
            self.values.append(secret)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        return redact(text, self.values)


@dataclass(frozen=True)
class SlackCard:
    """The deploy's Slack message, once posted: edited as the deploy goes, the failure's
    excerpt as a reply in its thread."""

    client: WebClient
    channel: str
    ts: str

    @classmethod
    def post(
        cls, notify: Notify | None, summary: DeploySummary, secrets: Secrets
    ) -> "SlackCard | None":
        """Post the card where ``notify`` says; None without a place, a Slack block, or when
        Slack failed."""
        access: SlackAccess | None = load_optional(SlackAccess) if notify else None
        if access is None or notify is None:
            return None
        secrets.add(access.bot_token.get_secret_value())
        client = slack.slack_client(access)
        ts = slack.post_deploy_message(client, notify.channel, summary, notify.thread_ts)
        return cls(client, notify.channel, ts) if ts else None

    def show(self, summary: DeploySummary) -> None:
        slack.update_deploy_message(self.client, self.channel, self.ts, summary)

    def reply(self, text: str) -> None:
        slack.post_message(self.client, self.channel, text, thread_ts=self.ts)


@dataclass(frozen=True)
class GitHubReport:
    """What GitHub is told of the deploy: statuses of its deployment, and the comment on the
    pull request that asked for it. GitHub being down never fails or hides the deploy."""

    access: GitHubAccess
    repository: str
    environment_url: str | None
    pull_request: PullRequestComment | None
    secrets: Secrets
    logger: Any

    def status(self, deployment_id: int, state: str, description: str, run_url: str | None) -> None:
        try:
            report_status(
                self.access,
                self.repository,
                deployment_id,
                state,
                description=description,
                log_url=run_url,
                environment_url=self.environment_url,
            )
        except Exception as exc:
            self.logger.warning(
                "Could not report %s to GitHub: %s", state, self.secrets.redact(str(exc))
            )

    def show(self, summary: DeploySummary) -> None:
        """The pull request comment (if a pull request asked) with the same facts as the card."""
        pull = self.pull_request
        if pull is None:
            return
        try:
            body = self.secrets.redact(comment_markdown(summary))
            edit_comment(self.access, pull.repository, pull.comment_id, body)
        except Exception as exc:
            self.logger.warning(
                "Could not update the comment on pull request #%s: %s",
                pull.number,
                self.secrets.redact(str(exc)),
            )


class RunRecord:
    """What Prefect keeps of the deploy: the run's name, tags and labels, and the artifacts of
    :mod:`adapters.history` (the run's report, the deployed release, the environments page)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def resolved(self, summary: DeploySummary, app: str) -> None:
        """Name the run after its commit, tag it with app and environment, and label it with
        what it changes (where the terminal following it reads that)."""
        run_id = runtime.flow_run.id
        if not run_id:
            return
        tags = {*runtime.flow_run.tags, *run_tags(app, summary.environment)}
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=summary.title, tags=sorted(tags))
            if summary.change is None:
                return
            label = {CHANGE_LABEL: change_label(summary.change)}
            try:
                client.update_flow_run_labels(UUID(str(run_id)), label)
            except Exception as exc:  # the terminal misses the line; the deploy goes on
                self.logger.warning("Could not record what the deploy changes: %s", exc)

    def deployed(self, summary: DeploySummary, commit_url: str | None) -> None:
        history.write_deployed(summary, commit_url)

    def finished(self, summary: DeploySummary) -> None:
        history.write_report(summary)

    def refresh_environments(self) -> None:
        """Show this deploy on the ``environments`` page; a failure only leaves it stale."""
        try:
            history.write_environments()
        except Exception as exc:
            self.logger.warning("Could not update the environments page: %s", exc)


def redact(text: str, secrets: list[str]) -> str:
    r"""``text`` with each of ``secrets`` (and each line of a multi-line one) replaced by ``***``.

    >>> key = "-----BEGIN KEY-----\nAAAAsecretAAAA\n-----END KEY-----"
    >>> redact("token ghp_abc, key line AAAAsecretAAAA", ["ghp_abc", key])
    'token ***, key line ***'
    """
    pieces = {line for secret in secrets for line in secret.splitlines() if len(line) >= 8}
    pieces |= {secret for secret in secrets if secret}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def load_optional(block_type: type, name: str = "default") -> Any | None:
    try:
        return block_type.load(name)
    except (ValueError, ObjectNotFound):
        return None
