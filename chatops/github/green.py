"""Deploy on green: an auto-deploy branch (``auto_deploy_on: green``) deploys its head once the
commit's required checks are all successful.

GitHub tells the gateway about CI through signed ``status``, ``check_suite`` and ``check_run``
deliveries. Each one is only a hint: whatever it says, the gateway asks GitHub for the truth
about every environment of the repository that deploys on green::

    head     = GET /repos/{o}/{r}/branches/{branch}              its head commit, and the
                                                                 protection's required checks
    statuses = GET /repos/{o}/{r}/commits/{sha}/status           commit statuses (latest each)
    checks   = GET /repos/{o}/{r}/commits/{sha}/check-runs       check runs (latest each)

and deploys only when the delivery's commit **is** the branch's head and every required check
is successful. Which checks are required: the environment's ``required_contexts``; when it names
none, GitHub's required status checks of the branch (its protection); when the branch has none
either, every status and check run reported on the commit (and at least one).

So the order and number of deliveries do not matter: the first delivery that finds the head
green asks for the deploy, with the idempotency key ``github-green-<app>-<env>-<sha>``, which the
intake and Prefect keep unique; every later one finds the key taken. A commit that is no longer
the head (a newer one was pushed) is never deployed, so an older commit never follows a newer
one. A red required check posts nothing to GitHub; where the environment has a
``slack_channel`` and Slack is configured, it gets one line per commit (key
``github-red-<app>-<env>-<sha>``).
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from github import GithubException

from adapters.github import github_client
from blocks import Environment, GitHubAccess
from blocks.environment import AUTO_ON_GREEN
from chatops.catalog import Snapshot
from chatops.github.events import (
    Delivery,
    Ignored,
    NotReady,
    as_dict,
    login_of,
    repository_of,
    sha_of,
)
from chatops.grammar import Command
from chatops.intake import ReplyTo
from chatops.request import Request, Requester

EVENTS = frozenset({"status", "check_suite", "check_run"})
"""The deliveries that may turn a commit green (or red)."""
PASSING = frozenset({"success", "neutral", "skipped"})
"""Check run conclusions GitHub's branch protection counts as passed."""
RED = frozenset({"failure", "error", "cancelled", "timed_out", "action_required", "stale"})
"""Commit status states and check run conclusions that fail a required check."""


@dataclass(frozen=True)
class Hint:
    """What a delivery says: this commit of this repository has news from CI."""

    repository: str
    sha: str
    sender: str


@dataclass(frozen=True)
class Branch:
    """What GitHub says of a branch at the moment of asking."""

    head: str
    required: list[str]
    """GitHub's required status checks of the branch (contexts and checks); [] for none."""


class Reader(Protocol):
    """Asks GitHub (blocking calls: run them in a thread)."""

    def branch(self, repository: str, name: str) -> Branch: ...

    def reported(self, repository: str, sha: str) -> dict[str, str]:
        """Each status context and check run name of commit ``sha`` → ``success``, ``red``
        or ``pending``."""
        ...


@dataclass(frozen=True)
class Verdict:
    """Whether a commit's required checks are green, red, or still pending, and which decide."""

    state: str
    blocking: list[str] = field(default_factory=list)


@dataclass
class Found:
    """What one delivery leads to: deploys to ask for, red lines to post, and why not others."""

    deploys: list[tuple[Request, ReplyTo]] = field(default_factory=list)
    red: list[tuple[str, str, str]] = field(default_factory=list)
    """``(key, channel, text)`` of each line to post to Slack."""
    notes: list[str] = field(default_factory=list)


def read_hint(delivery: Delivery) -> Hint:
    """The repository and commit a ``status``, ``check_suite`` or ``check_run`` delivery is
    about; :class:`Ignored` for actions that change nothing (a check run just created)."""
    payload = delivery.payload
    if delivery.event == "status":
        sha = payload.get("sha")
    elif delivery.event == "check_suite":
        if payload.get("action") != "completed":
            raise Ignored(f"check_suite action {str(payload.get('action'))[:40]!r} is not used")
        sha = as_dict(payload.get("check_suite")).get("head_sha")
    elif delivery.event == "check_run":
        if payload.get("action") != "completed":
            raise Ignored(f"check_run action {str(payload.get('action'))[:40]!r} is not used")
        sha = as_dict(payload.get("check_run")).get("head_sha")
    else:
        raise Ignored(f"{delivery.event} events are not used")
    sender = login_of(as_dict(payload.get("sender")).get("login"))
    return Hint(repository_of(payload), sha_of(sha), sender)


def green_targets(config: Snapshot, repository: str) -> list[tuple[str, str, Environment]]:
    """``(app, environment name, environment)`` of every environment of ``repository`` that
    deploys its auto-deploy branch on green."""
    return [
        (name, env_name, env)
        for name, app in config.apps_for_repository(repository)
        for env_name in app.environments
        if (env := config.environment(name, env_name)) is not None
        and env.auto_deploys_on() == AUTO_ON_GREEN
    ]


def judge(reported: dict[str, str], required: list[str]) -> Verdict:
    """Green when every required check reported ``success``; red when one of them is red;
    else pending. Nothing required: every reported one, and at least one.

    >>> judge({"ci/build": "success", "ci/test": "pending"}, ["ci/build", "ci/test"]).state
    'pending'
    >>> judge({"ci/build": "success", "ci/test": "red"}, ["ci/build"]).state
    'green'
    >>> judge({"lint": "red"}, []).blocking
    ['lint (red)']
    >>> judge({}, []).state
    'pending'
    """
    needed = required or sorted(reported)
    if not needed:
        return Verdict("pending", ["no check has reported yet"])
    blocking = [
        f"{n} ({reported.get(n, 'missing')})" for n in needed if reported.get(n) != "success"
    ]
    if any(reported.get(n) == "red" for n in needed):
        return Verdict("red", blocking)
    return Verdict("pending" if blocking else "green", blocking)


def evaluate(targets: list[tuple[str, str, Environment]], hint: Hint, read: Reader) -> Found:
    """The deploys and red lines ``hint`` leads to in ``targets`` (see :func:`green_targets`;
    blocking: ``read`` asks GitHub). The commit's checks are only read when it is the head of
    a target's branch."""
    found = Found()
    branches: dict[str, Branch] = {}
    reported: dict[str, str] | None = None
    for app, env_name, env in targets:
        name, where = str(env.auto_deploy_branch), f"{app} {env_name}"
        if name not in branches:
            branches[name] = read.branch(hint.repository, name)
        branch = branches[name]
        if branch.head != hint.sha:
            found.notes.append(
                f"{where}: {hint.sha[:12]} is not the head of {name} "
                f"({branch.head[:12]}); only the head deploys"
            )
            continue
        if reported is None:
            reported = read.reported(hint.repository, hint.sha)
        verdict = judge(reported, env.required_contexts or branch.required)
        if verdict.state == "green":
            found.deploys.append(_deploy(app, env_name, env, name, hint))
            found.notes.append(f"{where}: {name} at {hint.sha[:12]} is green")
        elif verdict.state == "red":
            found.notes.append(f"{where}: red: {', '.join(verdict.blocking)}")
            if env.slack_channel:
                found.red.append(_red_line(app, env_name, env.slack_channel, name, hint, verdict))
        else:
            found.notes.append(f"{where}: waiting for {', '.join(verdict.blocking)}")
    return found


def _deploy(
    app: str, env_name: str, env: Environment, branch: str, hint: Hint
) -> tuple[Request, ReplyTo]:
    requester = Requester("github", hint.sender, channel=env.slack_channel)
    request = Request(
        requester,
        Command("deploy", app, ref=branch, environment=env_name),
        sha=hint.sha,
        key=f"github-green-{app}-{env_name}-{hint.sha}",
    )
    return request, ReplyTo()


def _red_line(
    app: str, env_name: str, channel: str, branch: str, hint: Hint, verdict: Verdict
) -> tuple[str, str, str]:
    text = (
        f":red_circle: {app} {env_name} does not deploy {branch} at `{hint.sha[:7]}`: "
        f"{', '.join(verdict.blocking)[:300]}"
    )
    return f"github-red-{app}-{env_name}-{hint.sha}", channel, text


async def find(delivery: Delivery, config: Snapshot, access: GitHubAccess | None) -> Found:
    """:func:`evaluate` a delivery against GitHub (``access``) in a thread; :class:`NotReady`
    when GitHub cannot be asked (a later delivery tries again)."""
    if not config.loaded:
        raise NotReady("the configuration has not been loaded from Prefect yet")
    hint = read_hint(delivery)
    targets = green_targets(config, hint.repository)
    if not targets:
        raise Ignored(f"no environment of {hint.repository} deploys on green")
    if access is None:
        raise NotReady("deploy on green needs the chatops-github/default block (a token)")
    try:
        return await asyncio.to_thread(evaluate, targets, hint, GitHubReader(access))
    except GithubException as exc:
        said = exc.data.get("message") if isinstance(exc.data, dict) else None
        raise NotReady(
            f"GitHub answered {exc.status} ({str(said or 'no message')[:100]}) when asked about "
            f"{hint.repository} at {hint.sha[:12]}"
        ) from None
    except OSError as exc:  # requests' connection errors and timeouts are OSErrors
        raise NotReady(f"GitHub could not be reached: {str(exc)[:300]}") from None


class GitHubReader:
    """The :class:`Reader` that asks GitHub's REST API with the deploy system's token."""

    def __init__(self, access: GitHubAccess) -> None:
        self.client = github_client(access, lazy=True)

    def branch(self, repository: str, name: str) -> Branch:
        found = self.client.get_repo(repository).get_branch(name)
        return Branch(found.commit.sha, required_checks(found.raw_data))

    def reported(self, repository: str, sha: str) -> dict[str, str]:
        commit = self.client.get_repo(repository).get_commit(sha)
        states = {s.context: _status_state(s.state) for s in commit.get_combined_status().statuses}
        states.update(_check_runs(commit.get_check_runs()))
        return states


def required_checks(branch: dict[str, Any]) -> list[str]:
    """The required status checks of a branch (contexts and checks), from GitHub's branch
    object (``protection.required_status_checks``); [] when it has none.

    >>> required_checks({"protection": {"required_status_checks": {
    ...     "contexts": ["ci/build"], "checks": [{"context": "ci/build"}, {"context": "lint"}]}}})
    ['ci/build', 'lint']
    >>> required_checks({"protected": False})
    []
    """
    checks = as_dict(as_dict(branch.get("protection")).get("required_status_checks"))
    names = [str(c) for c in checks.get("contexts") or []]
    names += [str(as_dict(c).get("context")) for c in checks.get("checks") or [] if as_dict(c)]
    return list(dict.fromkeys(names))


def _status_state(state: str) -> str:
    return "success" if state == "success" else "red" if state in RED else "pending"


def _check_runs(runs: Iterable[Any]) -> dict[str, str]:
    """Each check run name → its state; GitHub lists the latest run of each name first."""
    states: dict[str, str] = {}
    for run in runs:
        if run.name in states:
            continue
        if run.status != "completed":
            states[run.name] = "pending"
        else:
            conclusion = run.conclusion
            states[run.name] = "success" if conclusion in PASSING else "red"
    return states
