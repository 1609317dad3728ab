"""The fake GitHub's endpoints for deploy on green, and its Enterprise mode, held to GitHub.

The shared OpenAPI subset covers deployments only, so these answers are held to real ones:
exchanges PyGithub's test suite recorded against api.github.com (``tests/fixtures/github_replay/``,
README there). Every key of the real answer must be in the fake's, with a value of the same JSON
type (nested objects and list items too); PyGithub must read them.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.github_api import GREEN_ROUTES, FakeGitHub
from tests.testbed.gitrepo import AppRepo, make_app_repo

REPLAY = Path(__file__).parent / "fixtures" / "github_replay"
REPO = "acme/shop"
FREE_FORM = ("/permissions",)
"""Objects whose keys are data, not shape (a GitHub App's permissions: name → access)."""


def recorded(name: str) -> tuple[str, str, int, Any]:
    """Method, path, status and parsed body of one recorded api.github.com exchange."""
    lines = (REPLAY / f"{name}.txt").read_text().split("\n")
    _scheme, method, _host, _port, path, _headers, _body, status, _answer_headers, answer = lines[
        :10
    ]
    assert ast.literal_eval(_headers)  # the file is one exchange in PyGithub's replay format
    return method, path, int(status), json.loads(answer)


def shape_problems(real: Any, fake: Any, where: str = "") -> list[str]:
    """Where ``fake`` lacks a key of ``real`` or has another JSON type there (null matches any
    type: GitHub sends null for many optional fields)."""
    if real is None or fake is None:
        return []
    if isinstance(real, dict):
        if not isinstance(fake, dict):
            return [f"{where or '<body>'}: object expected"]
        if where.endswith(FREE_FORM):
            return []
        return [
            problem
            for key, value in real.items()
            for problem in (
                shape_problems(value, fake[key], f"{where}/{key}")
                if key in fake
                else [f"{where}/{key}: missing"]
            )
        ]
    if isinstance(real, list):
        if not isinstance(fake, list):
            return [f"{where}: list expected"]
        return shape_problems(real[0], fake[0], f"{where}/0") if real and fake else []
    kinds = (bool, int, float, str)
    real_kind = next(k for k in kinds if isinstance(real, k))
    if not isinstance(fake, real_kind) or (real_kind is int and isinstance(fake, bool)):
        return [f"{where}: {type(fake).__name__} where GitHub sends {real_kind.__name__}"]
    return []


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> AppRepo:
    return make_app_repo(tmp_path_factory.mktemp("repo") / "shop")


@pytest.fixture
def github(fake_github: FakeGitHub, git_repo: AppRepo) -> FakeGitHub:
    fake_github.add_repo(REPO, git_dir=git_repo.path)
    return fake_github


def answer(fake: FakeGitHub, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    client = fake.client()
    status, _headers, data = client.requester.requestJson(method, fake.url + path, input=body)
    return status, json.loads(data) if data else None


def test_every_route_for_deploy_on_green_is_held_to_a_recorded_answer() -> None:
    held = {  # each one's test below
        "_get_branch",
        "_get_required_status_checks",
        "_list_check_runs",
        "_create_commit_status",
    }
    assert {route.handler for route in GREEN_ROUTES} == held
    assert not any(route.in_contract for route in GREEN_ROUTES), "else the contract holds it"


def test_a_branch_answers_like_github(github: FakeGitHub, git_repo: AppRepo) -> None:
    github.protect_branch(REPO, "main", ["foo/bar"])
    method, _path, status, real = recorded("get_branch.protected")
    got = answer(github, method, f"/repos/{REPO}/branches/main")
    assert got[0] == status == 200
    assert shape_problems(real, got[1]) == []
    assert got[1]["commit"]["sha"] == git_repo.v2
    assert got[1]["protection"]["required_status_checks"]["contexts"] == ["foo/bar"]
    assert answer(github, "GET", f"/repos/{REPO}/branches/nope")[0] == 404
    assert github.violations == []


def test_required_status_checks_answer_like_github(github: FakeGitHub) -> None:
    method, _path, status, real = recorded("get_required_status_checks")
    path = f"/repos/{REPO}/branches/main/protection/required_status_checks"
    assert answer(github, method, path)[0] == 404, "no protection yet"
    github.protect_branch(REPO, "main", ["foo/bar", "continuous-integration/travis-ci"])
    got = answer(github, method, path)
    assert got[0] == status and shape_problems(real, got[1]) == []
    branch = github.client(lazy=True).get_repo(REPO).get_branch("main")
    assert branch.get_required_status_checks().contexts == [
        "foo/bar",
        "continuous-integration/travis-ci",
    ]


def test_check_runs_answer_like_github_latest_of_each_name_first(
    github: FakeGitHub, git_repo: AppRepo
) -> None:
    sha = git_repo.v2
    github.add_check_run(REPO, sha, "test (Python 3.8)", "failure")
    github.add_check_run(REPO, sha, "lint", None, status="in_progress")
    github.add_check_run(REPO, sha, "test (Python 3.8)", "success")
    method, _path, status, real = recorded("list_check_runs_for_ref")
    got = answer(github, method, f"/repos/{REPO}/commits/{sha}/check-runs")
    assert got[0] == status and shape_problems(real, got[1]) == []
    commit = github.client(lazy=True).get_repo(REPO).get_commit(sha)
    runs = [(r.name, r.status, r.conclusion) for r in commit.get_check_runs()]
    assert runs == [("test (Python 3.8)", "completed", "success"), ("lint", "in_progress", None)]
    assert len(list(commit.get_check_runs(filter="all"))) == 3
    with pytest.raises(ValueError, match="conclusion"):
        github.add_check_run(REPO, sha, "lint", "success", status="in_progress")


def test_a_commit_status_is_created_like_github_and_counts_in_the_combined_status(
    github: FakeGitHub, git_repo: AppRepo
) -> None:
    method, _path, status, real = recorded("create_commit_status")
    body = {"state": "success", "context": "ci/build", "description": "Build passed"}
    got = answer(github, method, f"/repos/{REPO}/statuses/{git_repo.v1}", body)
    assert got[0] == status == 201 and shape_problems(real, got[1]) == []
    commit = github.client(lazy=True).get_repo(REPO).get_commit(git_repo.v1)
    assert {s.context: s.state for s in commit.get_combined_status().statuses} == {
        "ci/build": "success"
    }
    bad = answer(github, "POST", f"/repos/{REPO}/statuses/{git_repo.v1}", {"state": "done"})
    assert bad[0] == 422


def test_a_moved_branch_is_what_github_answers(github: FakeGitHub, git_repo: AppRepo) -> None:
    github.move_branch(REPO, "main", git_repo.v1)
    assert github.client(lazy=True).get_repo(REPO).get_branch("main").commit.sha == git_repo.v1
    assert git_repo.git("rev-parse", "main") == git_repo.v2, "the repository is untouched"


def test_as_an_enterprise_server_the_api_is_under_api_v3_and_git_clones_over_http(
    github: FakeGitHub, git_repo: AppRepo, tmp_path: Path
) -> None:
    api = github.serve_as_enterprise("localhost")
    assert api == f"{github.web_url}/api/v3" and github.web_url.startswith("http://localhost:")
    repo = github.client().get_repo(REPO)
    assert repo.url == f"{api}/repos/{REPO}"
    assert repo.get_branch("main").commit.sha == git_repo.v2

    mirror = tmp_path / "mirror"
    cloned = subprocess.run(
        ["git", "clone", "--mirror", "-q", f"{github.web_url}/{REPO}.git", str(mirror)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cloned.returncode == 0, cloned.stderr
    assert subprocess.run(
        ["git", "-C", str(mirror), "rev-parse", "v1", "main"], capture_output=True, text=True
    ).stdout.split() == [git_repo.v1, git_repo.v2]
    assert [r.path for r in github.git_requests()][0] == f"/{REPO}.git/info/refs"
    pushed = subprocess.run(
        ["git", "-C", str(mirror), "push", f"{github.web_url}/{REPO}.git", "HEAD:refs/heads/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pushed.returncode != 0, "read-only"
    unknown = subprocess.run(
        ["git", "ls-remote", f"{github.web_url}/acme/none.git"], capture_output=True, timeout=60
    )
    assert unknown.returncode != 0
    assert github.violations == []
