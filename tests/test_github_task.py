"""Recording deploys on GitHub, against the fake GitHub API (checked against GitHub's spec)."""

import pytest

from blocks import GitHubAccess
from tasks.github import DeploymentRefused, record_deployment, report_status

SHA = "c0ffee" + "0" * 34


@pytest.fixture
def access(fake_github) -> GitHubAccess:
    fake_github.add_repo("acme/shop", refs={"main": SHA, "feature/login": SHA})
    yield GitHubAccess(token=fake_github.token, api_url=fake_github.url)
    assert fake_github.violations == []


def record(access: GitHubAccess, ref: str = "main", **options):
    settings = dict(
        task_name="deploy",
        payload={"chatops": {"flow_run_id": "x"}},
        description="alice via chatops",
        required_contexts=None,
        production=False,
    )
    settings.update(options)
    record_now = record_deployment.with_options(retry_delay_seconds=0)  # the tries, not the pauses
    return record_now(access, "acme/shop", ref, "staging", **settings)


def test_records_the_deployment_with_our_mark(prefect_server, fake_github, access) -> None:
    made = record(access, "feature/login")
    assert made.sha == SHA and made.ref == "feature/login"
    [stored] = fake_github.deployments
    assert stored["id"] == made.id and stored["environment"] == "staging"
    assert stored["payload"] == {"chatops": {"flow_run_id": "x"}}
    assert stored["task"] == "deploy"


def test_attaching_to_an_existing_deployment_creates_none(
    prefect_server, fake_github, access
) -> None:
    made = record(access)
    again = record(access, deployment_id=made.id)
    assert again == made and len(fake_github.deployments) == 1


def test_failing_and_missing_checks_are_named(prefect_server, fake_github, access) -> None:
    fake_github.set_commit_statuses("acme/shop", SHA, {"ci/build": "success", "ci/test": "failure"})
    with pytest.raises(DeploymentRefused) as caught:
        record(access, required_contexts=["ci/build", "ci/test", "ci/lint"])
    text = str(caught.value)
    assert "ci/test (failure)" in text and "ci/lint (missing)" in text
    assert "ci/build" not in text and "deploy!" in text
    assert fake_github.deployments == []
    forced = record(access, required_contexts=[])
    assert forced.sha == SHA


def test_unknown_ref_is_named(prefect_server, access) -> None:
    with pytest.raises(DeploymentRefused, match="does not know ref 'nope'"):
        record(access, "nope")


def test_server_error_is_retried_without_duplicates(prefect_server, fake_github, access) -> None:
    fake_github.fail_next("POST", r"/deployments$", 502)
    record(access)
    assert len(fake_github.deployments) == 1


def test_merged_branch_202_is_not_a_deployment(prefect_server, fake_github, access) -> None:
    fake_github.fail_next(
        "POST",
        r"/deployments$",
        202,
        body={"message": "Auto-merged main into topic on deployment."},
    )
    with pytest.raises(DeploymentRefused, match="Auto-merged"):
        record(access)


def test_statuses_carry_links_and_short_descriptions(prefect_server, fake_github, access) -> None:
    made = record(access)
    fake_github.fail_next("POST", r"/statuses$", 500)
    report_status.with_options(retry_delay_seconds=0)(
        access,
        "acme/shop",
        made.id,
        "success",
        description="x" * 500,
        log_url="http://127.0.0.1:4200/runs/flow-run/1",
        environment_url="https://staging.example",
    )
    [status] = fake_github.statuses(made.id)
    assert status["state"] == "success" and len(status["description"]) == 140
    assert status["target_url"] == "http://127.0.0.1:4200/runs/flow-run/1"
    assert status["environment_url"] == "https://staging.example"
