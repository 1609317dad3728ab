"""Pull request comments as GitHub delivers them: octokit's ``issue_comment`` example, made a
comment on a pull request of the fake GitHub.

No tests here; the pull request tests import what they need.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.fakes.github_api import FakeGitHub

HERE = Path(__file__).parent / "fixtures" / "github_webhooks"
EXAMPLE = HERE / "issue_comment.created.payload.json"
"""octokit/webhooks ``payload-examples/api.github.com/issue_comment/created.payload.json`` (see
``tests/fixtures/github_webhooks/README.md``): a comment on an issue, byte for byte."""


@cache
def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def comment_event(
    github: FakeGitHub,
    repository: str,
    number: int,
    login: str,
    body: str,
    *,
    kind: str = "User",
    on_pull_request: bool = True,
    action: str = "created",
) -> bytes:
    """The ``issue_comment`` delivery for ``login`` commenting ``body`` on pull request
    ``number`` of ``repository`` (the comment is made on the fake first, so reactions to it
    land). ``on_pull_request=False`` makes it a comment on a plain issue."""
    made = github.add_comment(repository, number, login, body)
    payload = copy.deepcopy(example())
    payload["action"] = action
    html = f"https://github.com/{repository}/pull/{number}"
    issue, comment = payload["issue"], payload["comment"]
    issue.update(
        number=number, html_url=html if on_pull_request else html.replace("pull", "issues")
    )
    if on_pull_request:  # what GitHub adds to the issue of a pull request
        api = f"https://api.github.com/repos/{repository}/pulls/{number}"
        issue["pull_request"] = {
            "url": api,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "merged_at": None,
        }
    comment.update(id=made["id"], body=body, html_url=f"{html}#issuecomment-{made['id']}")
    for person in (comment["user"], payload["sender"]):
        person.update(login=login, type=kind)
    payload["repository"]["full_name"] = repository
    payload["repository"]["name"] = repository.split("/", 1)[1]
    return json.dumps(payload).encode()
