"""Keep people informed while a deploy runs: GitHub statuses, the Slack message, the run report.

A :class:`DeployReport` follows the flow through its steps (``with report.step("build"):``),
times them, and tells every audience at the right moments:

- GitHub: ``in_progress`` once the deployment is recorded, then ``success``/``failure``/``error``,
  each with the run's link and the environment's URL (skipped, with one log line, when no
  ``chatops-github/default`` block is configured);
- Slack: one message in the requesting channel, updated as steps finish, and the failure excerpt
  as a thread reply (when the request came with a channel and a ``chatops-slack/default`` block
  exists);
- Prefect: the flow run's name and tags, and the Markdown artifacts of :mod:`tasks.history`.

Reporting never fails a deploy: a GitHub or Slack outage is logged and the deploy goes on.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import runtime
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from prefect.utilities.urls import url_for

from blocks.github import GitHubAccess
from blocks.slack import SlackAccess
from flows.target import Target, UnknownTarget
from tasks import history, slack
from tasks.build import BuildFailed
from tasks.git import UnknownRef
from tasks.github import ChecksNotGreen, DeploymentRefused, GitHubDeployment, report_status
from tasks.health import Unhealthy

EXCERPT_CHARS = 2000
FAILURES = (UnknownTarget, UnknownRef, DeploymentRefused, BuildFailed, Unhealthy)
"""Errors that mean "this deploy cannot work" (GitHub state ``failure``); others are ``error``."""


def run_title(app: str, ref: str, sha: str | None, environment: str) -> str:
    """How a deploy is named everywhere: ``shop@feature-x (1a2b3c4) → staging``."""
    commit = f" ({sha[:7]})" if sha else ""
    return f"{app}@{ref}{commit} → {environment}"


def load_optional(block_type: type, name: str = "default") -> Any | None:
    try:
        return block_type.load(name)
    except (ValueError, ObjectNotFound):
        return None


class DeployReport:
    """The state of one deploy as people see it; see the module docstring."""

    def __init__(
        self,
        target: Target,
        requested_by: str,
        notify: dict[str, Any] | None,
        steps: list[str],
        force_parameters: dict[str, Any] | None = None,
    ):
        self.logger = get_run_logger()
        self.target = target
        self.github: GitHubAccess | None = load_optional(GitHubAccess)
        self.deployment: GitHubDeployment | None = None
        self.force_parameters = force_parameters
        self.summary: dict[str, Any] = {
            "app": target.name,
            "environment": target.environment_name,
            "ref": target.ref,
            "sha": None,
            "requested_by": requested_by or "someone",
            "hosts": target.hosts,
            "run_url": self.run_url(),
            "environment_url": target.environment.url,
            "steps": [{"name": n, "state": "pending", "seconds": None} for n in steps],
            "outcome": None,
            "error": None,
            "deployment_id": None,
            "release": None,
            "title": run_title(target.name, target.ref, None, target.environment_name),
        }
        self.secrets = self._secret_values()
        self.slack = self._open_slack(notify or {})
        if self.github is None:
            self.logger.warning("GitHub reporting is off: no chatops-github/default block")

    @staticmethod
    def run_url() -> str | None:
        run_id = runtime.flow_run.id
        return url_for("flow-run", obj_id=run_id) if run_id else None

    def _secret_values(self) -> list[str]:
        found = [self.target.environment.ssh_private_key.get_secret_value()]
        if self.github is not None:
            found.append(self.github.token.get_secret_value())
        return [s for s in found if s]

    def redact(self, text: str) -> str:
        """``text`` with every secret this run knows replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _open_slack(self, notify: dict[str, Any]) -> dict[str, Any] | None:
        channel = notify.get("channel")
        access: SlackAccess | None = load_optional(SlackAccess) if channel else None
        if access is None:
            return None
        self.secrets.append(access.bot_token.get_secret_value())
        client = slack.slack_client(access)
        ts = slack.post_deploy_message(client, channel, self.summary, notify.get("thread_ts"))
        return {"client": client, "channel": channel, "ts": ts} if ts else None

    def _update_slack(self) -> None:
        if self.slack:
            slack.update_deploy_message(
                self.slack["client"], self.slack["channel"], self.slack["ts"], self.summary
            )

    def _step(self, name: str) -> dict[str, Any]:
        return next(s for s in self.summary["steps"] if s["name"] == name)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step (entering it again adds to its time) and publish its state."""
        entry = self._step(name)
        entry["state"] = "running"
        self._update_slack()
        started = time.monotonic()
        try:
            yield
        except BaseException:
            entry["state"] = "failed"
            raise
        else:
            entry["state"] = "done" if entry["state"] == "running" else entry["state"]
        finally:
            entry["seconds"] = (entry["seconds"] or 0) + time.monotonic() - started
        self._update_slack()

    def mark(self, name: str, state: str) -> None:
        """Set a step's state by hand, e.g. ``cached`` for a build the cache answered."""
        self._step(name)["state"] = state

    def recorded(self, deployment: GitHubDeployment | None) -> None:
        """The GitHub deployment is known (or reporting is off): say the deploy is under way."""
        self.deployment = deployment
        if deployment is not None:
            self.summary["deployment_id"] = deployment.id
            self._github_status("in_progress", f"Deploying {self.target.ref} with chatops")

    def resolved(self, sha: str, release: str) -> None:
        """The commit is known: name the run after it and tag it with app and environment."""
        self.summary.update(
            sha=sha,
            release=release,
            title=run_title(self.target.name, self.target.ref, sha, self.target.environment_name),
        )
        run_id = runtime.flow_run.id
        if run_id:
            tags = {
                *runtime.flow_run.tags,
                f"app:{self.target.name}",
                f"env:{self.target.environment_name}",
            }
            with get_client(sync_client=True) as client:
                client.update_flow_run(run_id, name=self.summary["title"], tags=sorted(tags))
        self._update_slack()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Report the block's outcome: success, or failure/error with what went wrong."""
        try:
            yield
        except FAILURES as exc:
            if isinstance(exc, ChecksNotGreen) and self.force_parameters:
                self.summary["force_parameters"] = self.force_parameters  # "Deploy anyway"
            self.failed("failure", describe(exc))
            raise
        except Exception as exc:
            self.failed("error", describe(exc))
            raise
        self.succeeded()

    def succeeded(self) -> None:
        self._finish(
            "success", None, f"Deployed {self.target.ref} to {self.target.environment_name}"
        )
        history.write_deployed(self.summary)

    def failed(self, outcome: str, error: str) -> None:
        """The deploy ended with ``failure`` (it could not be done) or ``error`` (it broke)."""
        self._finish(
            outcome,
            self.redact(error)[-EXCERPT_CHARS:],
            f"Deploy {outcome}: {self.redact(error).splitlines()[0][:100]}",
        )
        if self.slack and self.summary["error"]:
            slack.post_thread_reply(
                self.slack["client"],
                self.slack["channel"],
                self.slack["ts"],
                f"```{self.summary['error']}```",
            )

    def _finish(self, outcome: str, error: str | None, description: str) -> None:
        self.summary.update(
            outcome=outcome,
            error=error,
            finished=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        for entry in self.summary["steps"]:
            if entry["state"] in ("pending", "running"):
                entry["state"] = "skipped" if entry["state"] == "pending" else "failed"
        self._github_status(outcome, description)
        self._update_slack()
        history.write_report(self.summary)

    def _github_status(self, state: str, description: str) -> None:
        if self.github is None or self.deployment is None:
            return
        try:
            report_status(
                self.github,
                self.target.app.repository,
                self.deployment.id,
                state,
                description=description,
                log_url=self.summary["run_url"],
                environment_url=self.target.environment.url,
            )
        except Exception as exc:  # GitHub being down must not fail or hide the deploy itself
            self.logger.warning("Could not report %s to GitHub: %s", state, self.redact(str(exc)))


def describe(exc: BaseException) -> str:
    """A short account of a failure for people; a failed build includes its last lines."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BuildFailed) and exc.tail:
        text += "\n" + "\n".join(exc.tail)
    return text
