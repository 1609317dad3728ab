"""Record deploys on GitHub: a Deployment per deploy, and its statuses as the deploy goes on.

GitHub shows them on the repository's Environments page and on pull requests. The API base URL
comes from the ``GitHubAccess`` block, so GitHub Enterprise Server works the same way.

POSTs are never retried by the HTTP client (a retried create would make two deployments);
status updates are retried as Prefect task retries instead.
"""

from dataclasses import dataclass
from typing import Any

from github import GithubException
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters.github import github_client
from adapters.task_ledger import HOOKS
from blocks.github import GitHubAccess
from model.errors import DeployFailure, worth_retrying

DESCRIPTION_LIMIT = 140
PAYLOAD_MARK = "chatops"
"""Key of the deployment ``payload`` that marks deployments this system created itself."""


class DeploymentRefused(DeployFailure, RuntimeError):
    """GitHub would not create the deployment; the message says why and what to do."""


class ChecksNotGreen(DeploymentRefused):
    """The commit's required checks are failing or missing; a forced deploy skips them."""


@dataclass(frozen=True)
class GitHubDeployment:
    """A GitHub Deployment this run reports to."""

    id: int
    sha: str
    ref: str


def failing_checks(data: Any, required: list[str] | None) -> list[str]:
    """The checks that block a deploy, from a 409 body: ``ci/test (failure)``, ``lint (missing)``.

    GitHub lists the checks it saw; a required check that never reported is not in the body, so
    it is found by comparing with ``required``.
    """
    errors = data.get("errors") if isinstance(data, dict) else None
    seen: dict[str, str] = {}
    for error in errors or []:
        for context in (error.get("contexts") or []) if isinstance(error, dict) else []:
            seen[str(context.get("context"))] = str(context.get("state"))
    blocking = [f"{name} ({state})" for name, state in seen.items() if state != "success"]
    return blocking + [f"{name} (missing)" for name in required or [] if name not in seen]


def refusal(exc: GithubException, ref: str, required: list[str] | None) -> DeploymentRefused:
    """What to tell a person when GitHub answers create-deployment with 409 or 422."""
    message = str((exc.data or {}).get("message", "")) if isinstance(exc.data, dict) else ""
    if exc.status == 409 and "status checks" in message.lower():
        checks = ", ".join(failing_checks(exc.data, required)) or "see the commit on GitHub"
        return ChecksNotGreen(
            f"Required checks are not green for {ref}: {checks}. "
            "Fix them, or force the deploy (deploy! …) to skip the checks."
        )
    if exc.status == 409:
        return DeploymentRefused(
            f"GitHub could not merge the default branch into {ref}: "
            f"{message or 'merge conflict'}. Merge it yourself and retry."
        )
    return DeploymentRefused(f"GitHub does not know ref {ref!r}: {message or 'unknown ref'}.")


@task(
    name="record deployment",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=worth_retrying,
    cache_policy=NO_CACHE,
    **HOOKS,
)
def record_deployment(
    access: GitHubAccess,
    repository: str,
    ref: str,
    environment: str,
    *,
    task_name: str,
    payload: dict[str, Any],
    description: str,
    required_contexts: list[str] | None,
    production: bool,
    deployment_id: int | None = None,
) -> GitHubDeployment:
    """Create the GitHub Deployment of this deploy, or attach to ``deployment_id``.

    ``required_contexts=None`` lets GitHub check every status of the commit; ``[]`` skips the
    checks (a forced deploy). 409 and 422 become :class:`DeploymentRefused`.
    """
    repo = github_client(access).get_repo(repository)
    if deployment_id is not None:
        found = repo.get_deployment(deployment_id)
        return GitHubDeployment(id=found.id, sha=found.sha, ref=found.ref)
    extra = {} if required_contexts is None else {"required_contexts": required_contexts}
    try:
        created = repo.create_deployment(
            ref,
            task=task_name,
            auto_merge=False,
            payload=payload,
            environment=environment,
            description=description[:DESCRIPTION_LIMIT],
            production_environment=production,
            transient_environment=False,
            **extra,
        )
    except GithubException as exc:
        if exc.status in (409, 422):
            raise refusal(exc, ref, required_contexts) from None
        raise
    if created.id is None:  # 202: GitHub merged the default branch in instead of deploying
        raise DeploymentRefused(
            f"GitHub did not create a deployment for {ref}: "
            f"{created.raw_data.get('message', 'no deployment made')}"
        )
    get_run_logger().info("GitHub deployment %s for %s at %s", created.id, ref, created.sha)
    return GitHubDeployment(id=created.id, sha=created.sha, ref=ref)


def post_status(
    access: GitHubAccess,
    repository: str,
    deployment_id: int,
    state: str,
    *,
    description: str,
    log_url: str | None,
    environment_url: str | None,
) -> None:
    """Post one deployment status (``queued``, ``in_progress``, ``success``, ``failure``,
    ``error``...). A ``success`` marks the environment's earlier deployments inactive."""
    repo = github_client(access, lazy=True).get_repo(repository)
    optional = {
        key: value
        for key, value in (("target_url", log_url), ("environment_url", environment_url))
        if value
    }
    repo.get_deployment(deployment_id).create_status(
        state,
        description=description[:DESCRIPTION_LIMIT],
        auto_inactive=state == "success",
        **optional,
    )


report_status = task(
    name="report to github", retries=3, retry_delay_seconds=2, cache_policy=NO_CACHE, **HOOKS
)(post_status)
""":func:`post_status` as a task of the deploy run, retried when GitHub fails."""


def find_deployment(
    access: GitHubAccess, repository: str, environment: str, flow_run_id: str
) -> int | None:
    """The id of the deployment that flow run ``flow_run_id`` created (its payload says so)."""
    repo = github_client(access).get_repo(repository)
    for deployment in repo.get_deployments(environment=environment)[:30]:
        payload = deployment.payload if isinstance(deployment.payload, dict) else {}
        mark = payload.get(PAYLOAD_MARK)
        if isinstance(mark, dict) and mark.get("flow_run_id") == flow_run_id:
            return deployment.id
    return None


def blocking_checks(
    access: GitHubAccess, repository: str, sha: str, required: list[str] | None
) -> list[str]:
    """The commit statuses that would make GitHub refuse a deployment of ``sha`` (as
    :func:`record_deployment` asks for it): ``ci/test (failure)``, ``lint (missing)``.

    ``required=None`` means every reported status must be ``success``; ``[]`` none.
    """
    commit = github_client(access, lazy=True).get_repo(repository).get_commit(sha)
    reported = {s.context: s.state for s in commit.get_combined_status().statuses}
    needed = list(reported) if required is None else required
    return [
        f"{name} ({reported.get(name, 'missing')})"
        for name in needed
        if reported.get(name) != "success"
    ]
