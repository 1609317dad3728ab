"""Keep people informed while a deploy runs: GitHub statuses, the Slack message, the run report.

A :class:`DeployReport` follows the flow through its steps (``with report.step("build"):``),
times them in its :class:`~model.summary.DeploySummary`, and tells every audience at the right
moments:

- GitHub: ``in_progress`` once the deployment is recorded, then ``success``/``failure``/``error``,
  each with the run's link and the environment's URL (skipped, with one log line, when no
  ``chatops-github/default`` block is configured);
- Slack: one message in the requesting channel, updated as steps finish, and the failure excerpt
  as a thread reply (when the request came with a channel and a ``chatops-slack/default`` block
  exists);
- a pull request: the comment the gateway posted when the deploy was asked for there, edited
  to the same facts as the Slack message whenever that changes (:mod:`adapters.pull_request`);
- Prefect: the flow run's name and tags, and the Markdown artifacts of :mod:`adapters.history`;
- the environment's notification targets (:mod:`adapters.notifications`): started, succeeded,
  failed, rolled back.

Reporting never fails a deploy: a GitHub or Slack outage is logged and the deploy goes on.

When the process running a deploy dies, nothing in it can report any more: :func:`report_crash`
does it from outside, for the runner, for the recovery of runs whose runner died too, and for the
gateway when Prefect's automation finds a run silent (:mod:`chatops.dead_runs`). Whichever comes
first reports; the others find the run labelled :data:`REPORTED_LABEL` and stay quiet.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_logger, get_run_logger
from prefect.utilities.urls import url_for

from adapters import history, notifications, slack
from adapters.pauses import pause_point
from adapters.processes import running, this_process
from adapters.pull_request import PullRequestComment, edit_comment
from adapters.run_signing import claims, problem, signing_key
from blocks import App, Environment, GitHubAccess, SlackAccess
from blocks.environment import Event
from flows.audiences import GitHubReport, Notify, RunRecord, Secrets, SlackCard, load_optional
from flows.changes import what_changes
from flows.results import HostsFailed
from model.errors import DeployFailure
from model.summary import (
    Change,
    DeploySummary,
    Outcome,
    SlotHolder,
    Step,
    change_label,
    run_title,
)
from model.target import Target
from tasks.github import (
    ChecksNotGreen,
    GitHubDeployment,
    find_deployment,
    post_status,
)

EXCERPT_CHARS = 2000
REPORTED_LABEL = "chatops.crash-reported"
"""The flow run label that says its crash (or abort) was reported already, and when."""


def run_url(run_id: Any) -> str | None:
    return url_for("flow-run", obj_id=run_id) if run_id else None


class DeployReport:
    """The state of one deploy as people see it, timed step by step, told to each audience
    (:class:`GitHubReport`, :class:`SlackCard`, :class:`RunRecord`, the notification targets);
    see the module docstring."""

    def __init__(
        self,
        target: Target,
        requested_by: str,
        notify: Notify | None,
        steps: list[str],
        *,
        deployment_id: int | None = None,
        again: dict[str, Any] | None = None,
        pull_request: PullRequestComment | None = None,
        action: str = "deploy",
    ) -> None:
        self.logger = get_run_logger()
        self.target = target
        self.action = action
        self.deployment_id = deployment_id
        self.again = again
        self.pull_request = pull_request
        self.summary = DeploySummary(
            app=target.app_name,
            environment=target.environment_name,
            ref=target.ref,
            hosts=target.hosts,
            steps=[Step(name) for name in steps],
            requested_by=requested_by or "someone",
            run_url=run_url(runtime.flow_run.id),
            environment_url=target.environment.url,
            deployment_id=deployment_id,
            pull_request_url=pull_request.url if pull_request else None,
        )
        self.secrets = Secrets(target.environment.ssh_private_key.get_secret_value())
        github: GitHubAccess | None = load_optional(GitHubAccess)
        self.on_github: GitHubReport | None = None
        if github is None:
            self.logger.warning("GitHub reporting is off: no chatops-github/default block")
        else:
            self.secrets.add(github.token.get_secret_value())
            self.on_github = GitHubReport(
                github,
                target.app.repository,
                target.environment.url,
                pull_request,
                self.secrets,
                self.logger,
            )
        self.notifications = notifications.ready(target.environment.notifications, self.logger)
        for ready in self.notifications:
            self.secrets.add(ready.secret)
        self.run = RunRecord(self.logger)
        self.slack = SlackCard.post(notify, self.summary, self.secrets)
        self._notify("started")

    @property
    def github(self) -> GitHubAccess | None:
        """The GitHub block; None when GitHub reporting is off."""
        return self.on_github.access if self.on_github else None

    def redact(self, text: str) -> str:
        """``text`` with every secret this run knows replaced by ``***``."""
        return self.secrets.redact(text)

    def _show(self) -> None:
        """Show the summary as it is now: on the Slack card, and on the pull request comment."""
        if self.slack:
            self.slack.show(self.summary)
        if self.on_github:
            self.on_github.show(self.summary)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step (entering it again adds to its time) and publish its state."""
        entry = self.summary.step(name)
        entry.state = "running"
        self._show()
        started = time.monotonic()
        try:
            yield
        except BaseException:
            entry.state = "failed"
            raise
        else:
            entry.state = "done" if entry.state == "running" else entry.state
        finally:
            entry.seconds = (entry.seconds or 0) + time.monotonic() - started
        self._show()

    def at(self) -> str:
        """The step (or steps) the run is at now, for messages such as "... at health check"."""
        running = [s.name for s in self.summary.steps if s.state == "running"]
        if running:
            return " and ".join(running)
        done = [s.name for s in self.summary.steps if s.state not in ("pending", "skipped")]
        return f"the end of {done[-1]}" if done else "the start"

    def waiting_for(self, holder: SlotHolder | None) -> None:
        """The run waits for the environment's slot, which ``holder`` holds (None: no longer
        waits): the Slack card shows it."""
        if holder != self.summary.waiting_for:
            self.summary.waiting_for = holder
            self._show()

    def mark(self, name: str, state: Any) -> None:
        """Set a step's state by hand, e.g. ``cached`` for a build the cache answered."""
        self.summary.step(name).state = state

    def recorded(self, deployment: GitHubDeployment | None) -> None:
        """The GitHub deployment is known (or reporting is off): say the deploy is under way."""
        if deployment is not None:
            self.deployment_id = self.summary.deployment_id = deployment.id
            self._github_status("in_progress", f"Deploying {self.target.ref} with chatops")

    def resolved(self, sha: str, release: str) -> None:
        """The commit is known: name the run after it, tag it with app and environment, and
        say what it changes against what runs there now."""
        self.summary.sha, self.summary.release = sha, release
        self.summary.change = self._what_changes(sha)
        self.run.resolved(self.summary, self.target.app_name)
        self._show()

    def _what_changes(self, sha: str) -> Change | None:
        """What the deploy changes; None (and a log line) when it cannot be told, which never
        fails the deploy."""
        try:
            change = what_changes(self.target, sha, self.github)
        except Exception as exc:
            self.logger.warning(
                "Could not count the commits this deploy changes: %s", self.redact(str(exc))
            )
            return None
        if change is not None:
            self.logger.info("Changes: %s", change_label(change))
        return change

    @contextmanager
    def failures(self) -> Iterator[None]:
        """Report a failure of the block: ``failure`` (it cannot work) or ``error`` (it broke)."""
        try:
            yield
        except Exception as exc:
            if isinstance(exc, ChecksNotGreen) and self.again:
                self.summary.force_parameters = {**self.again, "force": True}
            self.failed("failure" if cannot_work(exc) else "error", describe(exc))
            raise

    def succeeded(self) -> None:
        """Every host runs the release: record that in Prefect, then tell GitHub and Slack.

        The record comes first because success is final: once it exists, a recovery keeps
        the release on the hosts and a crash report does not say ``error``, even if this
        process dies before the hosts' journals are cleared.
        """
        self.summary.finished = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        pause_point("success")
        self.run.deployed(self.summary, self._commit_url())
        pause_point("success recorded")
        description = f"Deployed {self.target.ref} to {self.target.environment_name}"
        self._finish("success", None, description)
        self._notify("rolled_back" if self.action == "rollback" else "succeeded")
        pause_point("success told")
        self.run.refresh_environments()

    def _commit_url(self) -> str | None:
        if self.github is None or not self.summary.sha:
            return None
        return self.github.commit_url(self.target.app.repository, self.summary.sha)

    def failed(self, outcome: Outcome, error: str) -> None:
        """The deploy ended with ``failure`` (it could not be done) or ``error`` (it broke)."""
        text = self.redact(error)
        self._finish(outcome, text[-EXCERPT_CHARS:], f"Deploy {outcome}: {text.splitlines()[0]}")
        self._notify("failed")
        if self.slack and self.summary.error:
            self.slack.reply(f"```{self.summary.error}```")

    def _finish(self, outcome: Outcome, error: str | None, description: str) -> None:
        self.summary.outcome, self.summary.error = outcome, error
        self.summary.finished = self.summary.finished or datetime.now(UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        for entry in self.summary.steps:
            if entry.state in ("pending", "running"):
                entry.state = "skipped" if entry.state == "pending" else "failed"
        self._github_status(outcome, description)
        self._show()
        self.run.finished(self.summary)

    def _notify(self, event: Event) -> None:
        """Tell the environment's notification targets; a failing one is only logged."""
        if self.notifications:
            facts = {"action": self.action, **facts_of(self.summary)}
            notifications.notify(self.notifications, event, facts, self.logger)

    def _github_status(self, state: str, description: str) -> None:
        if self.on_github is not None and self.deployment_id is not None:
            self.on_github.status(self.deployment_id, state, description, self.summary.run_url)


def facts_of(summary: DeploySummary) -> dict[str, Any]:
    """What a notification says about a deploy or rollback."""
    return {
        "app": summary.app,
        "environment": summary.environment,
        "ref": summary.ref,
        "sha": summary.sha,
        "release": summary.release,
        "hosts": summary.hosts,
        "requested_by": summary.requested_by,
        "run_url": summary.run_url,
        "environment_url": summary.environment_url,
        "outcome": summary.outcome,
        "error": summary.error,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def cannot_work(exc: BaseException) -> bool:
    """Whether ``exc`` means "this deploy cannot work" (``failure``), not "it broke" (``error``);
    a step that failed on several hosts is a failure only if it failed that way on each
    (:meth:`~flows.results.HostsFailed.of`)."""
    return isinstance(exc, DeployFailure)


def describe(exc: BaseException) -> str:
    """A short account of a failure for people: what failed, where, and the output that says
    why (every error of this project carries its command's last lines in its message)."""
    if isinstance(exc, HostsFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def signed(flow_run: FlowRun) -> bool:
    """Whether the gateway signed this deploy run for its request key: only then does its
    ``deployment_id`` parameter name a GitHub deployment to report to (as in the flow)."""
    parameters = flow_run.parameters
    values = claims("deploy", parameters, flow_run.idempotency_key)
    return problem(values, parameters.get("signature"), signing_key(False)) is None


TELLING = "telling"
"""In :data:`REPORTED_LABEL` while the run's end is being told: ``<stamp> telling <process>``;
once everyone was told, the label is the stamp alone."""


def claim_report(flow_run_id: Any) -> str | None:
    """Label the run as being reported by this process; None when someone else reported it, or
    is reporting it now; else the label's stamp, for :func:`reported`.

    Whoever notices a dead run first (the runner, a restarted runner, the gateway) claims it
    here, just before telling anyone, so a run is reported once. A claim whose process died
    before it told everyone (:func:`abandoned`) is taken over. When Prefect cannot be asked,
    the run is reported anyway.
    """
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
            label = (run.labels or {}).get(REPORTED_LABEL)
            if label is not None and not abandoned(str(label)):
                return None
            claim = f"{stamp} {TELLING} {this_process()}"
            client.update_flow_run_labels(flow_run_id, {REPORTED_LABEL: claim})
    except Exception as exc:  # Prefect unreachable: better told twice than never
        get_logger("chatops.crash").warning("Could not label run %s: %s", flow_run_id, exc)
    return stamp


def abandoned(label: str) -> bool:
    """Whether :data:`REPORTED_LABEL` ``label`` is a claim whose process died while telling."""
    parts = label.split(" ", 2)  # the process names itself with a space too
    return len(parts) == 3 and parts[1] == TELLING and not running(parts[2])


def reported(flow_run_id: Any, stamp: str) -> None:
    """Everyone was told of the run's end: its label drops the claim (see :data:`TELLING`)."""
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(flow_run_id, {REPORTED_LABEL: stamp})
    except Exception as exc:  # the claim stays; a restarted runner may tell again
        get_logger("chatops.crash").warning("Could not label run %s: %s", flow_run_id, exc)


def report_crash(flow_run: FlowRun, why: str, aborted: str | None = None) -> bool:
    """Tell GitHub (``error``) and Slack that the process running ``flow_run`` died, or, with
    ``aborted`` (who), that it was aborted.

    A run that had recorded its success before it died stays a success: GitHub gets
    ``success`` again (never ``error`` after it), and Slack that the next deploy records it.

    Runs outside the dead run (in the runner, or when a restarted runner finds the run
    orphaned), so it works from the run's parameters alone. The GitHub deployment is the one
    given in the parameters (of a run the gateway signed), or the one whose payload names this
    run. Also called by the gateway for a run Prefect found silent (:mod:`chatops.dead_runs`).

    A deploy asked for on a pull request also gets its comment there replaced by the report.

    Reports once per run (:func:`claim_report`); returns whether this call reported.
    """
    logger = get_logger("chatops.crash")
    stamp = claim_report(flow_run.id)
    if stamp is None:
        logger.info("The end of run %s was reported already", flow_run.id)
        return False
    pause_point("crash claimed")
    try:
        return _tell_crash(flow_run, why, aborted, logger)
    finally:
        reported(flow_run.id, stamp)


def _tell_crash(flow_run: FlowRun, why: str, aborted: str | None, logger: Any) -> bool:
    parameters = flow_run.parameters
    app_name, environment = parameters.get("app"), parameters.get("environment")
    title = flow_run.name or run_title(
        str(app_name), str(parameters.get("ref")), None, str(environment)
    )
    link = run_url(flow_run.id)
    message = (
        f"Deploy {title} crashed: {why}. The next deploy brings every host back to one release."
    )
    state = "error"
    if history.runs_that_deployed({str(flow_run.id)}):  # success is final
        state = "success"
        message = (
            f"Deploy {title} succeeded on every host; then {why}. The next deploy records the "
            "release on the hosts."
        )
    elif aborted:
        message = f"Deploy {title} was aborted by {aborted}."
    try:
        app = App.load(str(app_name))
        env = Environment.load(f"{app_name}-{environment}")
    except (ValueError, ObjectNotFound):
        logger.warning("Crashed run %s names an unknown app environment", flow_run.id)
        return False
    github: GitHubAccess | None = load_optional(GitHubAccess)
    if github is not None:
        try:
            claimed = parameters.get("deployment_id") if signed(flow_run) else None
            deployment_id = claimed or find_deployment(
                github, app.repository, str(environment), str(flow_run.id)
            )
            if deployment_id:
                post_status(
                    github,
                    app.repository,
                    int(deployment_id),
                    state,
                    description=message,
                    log_url=link,
                    environment_url=env.url,
                )
        except Exception as exc:
            logger.warning("Could not report the crash of %s to GitHub: %s", flow_run.id, exc)
    pull = parameters.get("pull_request") if signed(flow_run) else None
    if github is not None and isinstance(pull, dict):  # the pull request comment that asked
        try:
            text = f":warning: {message}" + (f" [The run]({link})" if link else "")
            edit_comment(github, str(pull["repository"]), int(pull["comment_id"]), text)
        except Exception as exc:
            logger.warning(
                "Could not report the crash of %s on its pull request: %s", flow_run.id, exc
            )
    channel = (parameters.get("notify") or {}).get("channel")
    access: SlackAccess | None = load_optional(SlackAccess) if channel else None
    if access is not None and channel:
        client = slack.slack_client(access)
        slack.post_message(client, channel, f":warning: {message} {link or ''}".strip())
    crash = {"app": app_name, "environment": environment, "ref": parameters.get("ref")}
    crash |= {"requested_by": parameters.get("requested_by"), "run_url": link, "error": message}
    if state != "success":  # a success was told already, by the run itself
        targets = notifications.ready(env.notifications, logger)
        notifications.notify(targets, "failed", crash, logger)
    return True
