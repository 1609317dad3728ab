"""The fake GitHub's pull request endpoints, measured against GitHub's description of them.

``tests/fixtures/github_rest/pull_request_comments_openapi.json`` describes the operations a
pull request comment is answered with (its ``x-fixture-provenance`` says which parts are
GitHub's and which are not). Every answer the fake gives on these routes, errors included, is
checked against it with the same ``OpenApiContract`` the deployments subset uses, and PyGithub,
the client the product uses, reads them through :mod:`adapters.pull_request`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from referencing import Registry, Resource

from adapters import pull_request
from blocks.github import GitHubAccess
from tests.fakes.github_api import PULL_REQUEST_ROUTES, FakeGitHub, OpenApiContract
from tests.pull_request_support import EXAMPLE, HERE, comment_event

SPEC = Path(__file__).parent / "fixtures" / "github_rest" / "pull_request_comments_openapi.json"
SHA = "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d"
FORK_SHA = "743f5a58b0bce91c4eab744ff7e39dfca9e6e8a5"


@pytest.fixture(scope="module")
def described() -> OpenApiContract:
    return OpenApiContract(SPEC)


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo("acme/shop", refs={"main": SHA})
    fake_github.add_pull_request("acme/shop", 7, FORK_SHA, head_ref="fix", head_repo="octo/shop")
    return fake_github


def access(fake: FakeGitHub) -> GitHubAccess:
    return GitHubAccess(token=fake.token, api_url=fake.url)


class Caller:
    """Requests on the routes of the description, each answer checked against it; a request
    body the description refuses is sent only when ``invalid`` says it is meant to be."""

    def __init__(self, fake: FakeGitHub, described: OpenApiContract) -> None:
        self.fake, self.described = fake, described
        self.comment_id, self.username = 0, "alice"

    def __call__(
        self, method: str, template: str, body: Any = None, invalid: bool = False
    ) -> requests.Response:
        path = template.format(
            owner="acme",
            repo="shop",
            pull_number=7,
            issue_number=7,
            comment_id=self.comment_id,
            username=self.username,
        )
        if body is not None:
            assert bool(self.described.request_errors(method, template, body)) == invalid, body
        headers = {
            "Authorization": f"token {self.fake.token}",
            "Accept": "application/vnd.github+json",
        }
        answer = requests.request(
            method, self.fake.url + path, json=body, headers=headers, timeout=10
        )
        payload = answer.json() if answer.content else None
        assert self.described.response_errors(method, template, answer.status_code, payload) == []
        return answer


PULL = "/repos/{owner}/{repo}/pulls/{pull_number}"
COMMENTS = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
COMMENT = "/repos/{owner}/{repo}/issues/comments/{comment_id}"
REACTIONS = COMMENT + "/reactions"
PERMISSION = "/repos/{owner}/{repo}/collaborators/{username}/permission"


def test_the_fake_serves_every_operation_of_the_description(described: OpenApiContract) -> None:
    served = {(route.method, route.template) for route in PULL_REQUEST_ROUTES}
    assert set(described.operations()) == served


def test_answers_and_errors_match_the_description(
    github: FakeGitHub, described: OpenApiContract
) -> None:
    call = Caller(github, described)
    made = github.add_comment("acme/shop", 7, "alice", ".deploy to staging")
    call.comment_id = made["id"]
    pull = call("GET", PULL).json()
    assert pull["head"]["sha"] == FORK_SHA and pull["head"]["label"] == "octo:fix"
    assert pull["state"] == "open" and pull["base"]["sha"] == SHA

    assert call("POST", REACTIONS, {"content": "eyes"}).status_code == 201
    assert call("POST", REACTIONS, {"content": "eyes"}).status_code == 200  # "reaction exists"
    assert call("POST", REACTIONS, {"content": "tada"}, invalid=True).status_code == 422
    assert github.reactions(made["id"]) == ["eyes"]

    # Someone else's comment is theirs to edit: GitHub answers 403 to the bot's token.
    assert call("PATCH", COMMENT, {"body": "x"}).status_code == 403
    created = call("POST", COMMENTS, {"body": "Deploying…"})
    assert created.status_code == 201 and created.json()["user"]["login"] == github.login
    call.comment_id = created.json()["id"]
    edited = call("PATCH", COMMENT, {"body": "Deployed"})
    assert edited.status_code == 200 and edited.json()["body"] == "Deployed"
    assert call("POST", COMMENTS, {"body": ""}).status_code == 422
    call.comment_id = 999_999
    assert call("PATCH", COMMENT, {"body": "x"}).status_code == 404

    github.set_permission("acme/shop", "alice", "write")
    assert call("GET", PERMISSION).json()["permission"] == "write"
    call.username = "mallory"
    assert call("GET", PERMISSION).json()["permission"] == "read"
    assert github.comments("acme/shop", 7)[1]["edits"] == ["Deploying…", "Deployed"]
    assert github.violations == []


def test_pygithub_reads_what_the_fake_says(github: FakeGitHub) -> None:
    gh = access(github)
    github.set_permission("acme/shop", "alice", "admin")
    github.set_permission("acme/shop", "bob", "none")
    assert pull_request.may_write(gh, "acme/shop", "alice")
    assert not pull_request.may_write(gh, "acme/shop", "bob")
    assert not pull_request.may_write(gh, "acme/shop", "carol")  # read: a stranger
    head = pull_request.pull_request_head(gh, "acme/shop", 7)
    assert (head.sha, head.open, head.label) == (FORK_SHA, True, "octo:fix")
    theirs = github.add_comment("acme/shop", 7, "alice", ".deploy")
    pull_request.react(gh, "acme/shop", theirs["id"], "eyes")
    mine = pull_request.post_comment(gh, "acme/shop", 7, "one")
    pull_request.edit_comment(gh, "acme/shop", mine, "two")
    assert github.reactions(theirs["id"]) == ["eyes"]
    assert github.comments("acme/shop", 7)[-1] == {
        "id": mine,
        "user": github.login,
        "body": "two",
        "edits": ["one", "two"],
    }
    assert github.violations == []


def test_the_comment_events_the_tests_send_match_octokit_s_schema(github: FakeGitHub) -> None:
    """The example is a comment on an issue; the tests add ``issue.pull_request`` as GitHub
    does, and the result must still be an ``issue_comment`` GitHub could send."""
    registry = Registry()
    for path in (HERE / "schemas").rglob("*.schema.json"):
        schema = _load(path)
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    created = _load(HERE / "schemas" / "issue_comment" / "created.schema.json")
    validator = jsonschema.Draft7Validator(created, registry=registry)
    assert list(validator.iter_errors(_load(EXAMPLE))) == []
    event = _json(comment_event(github, "acme/shop", 7, "alice", ".deploy to staging"))
    assert list(validator.iter_errors(event)) == []
    assert event["issue"]["pull_request"]["html_url"].endswith("/acme/shop/pull/7")
    broken = _json(comment_event(github, "acme/shop", 7, "alice", ".deploy"))
    broken["issue"]["pull_request"]["merged"] = True  # not a field GitHub sends there
    assert list(validator.iter_errors(broken)) != []


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _json(raw: bytes) -> Any:
    return json.loads(raw)
