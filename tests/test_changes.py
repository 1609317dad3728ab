"""What a deploy changes against what its environment runs now, as people see it.

The Slack card, the pull request comment, the run report and the terminal show it; GitHub's
compare API counts it (the fake's answer is read by PyGithub, as the product reads GitHub's),
else the app's mirror does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from blocks.github import GitHubAccess
from chatops.cli.follow import GatewayRuns, follow
from chatops.cli.server import Gateway
from flows.changes import compare_on_github
from model.summary import Change, DeploySummary, Step
from render.page import report_markdown
from render.pull_request import comment_markdown
from render.slack_card import render_deploy_message
from tasks.git import commits_apart
from tests.fakes.github_api import COMPARE_REQUIRED, FakeGitHub
from tests.test_follow import (  # noqa: F401 - gateway: the fixture
    RUN_ID,
    Answers,
    PretendClock,
    gateway,
    run,
)

URL = "https://github.com/acme/shop/compare/1a2b3c4...5d6e7f8"


def summary(change: Change | None) -> DeploySummary:
    card = DeploySummary("shop", "staging", "v2", ["web-1"], [Step("build", "done", 1.0)])
    card.sha, card.change = "5d6e7f8" * 5 + "5d6e7", change
    return card


def fields(card: DeploySummary) -> list[str]:
    blocks = render_deploy_message(card)[1]
    section = next(b for b in blocks if b.get("block_id") == "deploy_summary")
    return [f["text"] for f in section["fields"]]


def test_the_card_says_how_many_commits_with_the_compare_link() -> None:
    assert f"*Changes*\n1 commit added (<{URL}|compare>)" in fields(
        summary(Change(1, 0, "1a2", URL))
    )
    assert "*Changes*\n3 commits added, 2 removed" in fields(summary(Change(3, 2, "1a2")))
    assert "*Changes*\nfirst deploy here" in fields(summary(Change(0, 0, None)))
    assert not [f for f in fields(summary(None)) if f.startswith("*Changes*")]


def test_a_link_that_is_not_a_web_url_is_left_out() -> None:
    change = Change(0, 1, "1a2", "javascript:alert(1)|x>")
    assert "*Changes*\n1 commit removed" in fields(summary(change))


def test_the_pull_request_comment_and_the_report_say_it_too() -> None:
    comment = comment_markdown(summary(Change(2, 1, "1a2", URL)))
    assert f"Changes: 2 commits added, 1 removed ([compare]({URL}))" in comment.splitlines()
    assert "Changes: first deploy here" in comment_markdown(summary(Change(0, 0, None)))
    assert "Changes" not in comment_markdown(summary(None))
    report = report_markdown(summary(Change(0, 3, "1a2", URL)))
    assert f"| changes | 3 commits removed ([compare]({URL})) |" in report.splitlines()


def test_the_terminal_shows_the_change_once(
    gateway: tuple[str, Answers],  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, answers = gateway
    answers.answers = [
        (200, run("RUNNING")),
        (200, {**run("RUNNING"), "change": f"1 commit added ({URL})"}),
        (200, {**run("RUNNING"), "change": f"1 commit added ({URL})"}),
        (200, {**run("COMPLETED"), "change": f"1 commit added ({URL})"}),
    ]
    follow(GatewayRuns(Gateway(url, "t")), RUN_ID, clock=PretendClock())
    assert capsys.readouterr().out.splitlines() == [f"  ↔ changes: 1 commit added ({URL})"]


def git(path: Path, *args: str) -> str:
    command = ["git", "-C", str(path), "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    done = subprocess.run([*command, *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, str, str, str]:
    """A repository where v2 follows v1 and v3 is on a side branch from v1."""
    path = tmp_path / "shop"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    shas = []
    for name in ("v1", "v2"):
        (path / "app.txt").write_text(name)
        git(path, "add", "app.txt")
        git(path, "commit", "-q", "-m", name)
        shas.append(git(path, "rev-parse", "HEAD"))
    git(path, "checkout", "-q", "-b", "side", shas[0])
    (path / "side.txt").write_text("v3")
    git(path, "add", "side.txt")
    git(path, "commit", "-q", "-m", "v3")
    return path, shas[0], shas[1], git(path, "rev-parse", "HEAD")


def test_the_mirror_counts_added_and_removed(history: tuple[Path, str, str, str]) -> None:
    path, v1, v2, v3 = history
    assert commits_apart(path, v1, v2) == (1, 0)
    assert commits_apart(path, v2, v1) == (0, 1)
    assert commits_apart(path, v2, v3) == (1, 1)
    assert commits_apart(path, v2, v2) == (0, 0)


def test_github_compare_as_pygithub_reads_the_fake(
    fake_github: FakeGitHub, history: tuple[Path, str, str, str]
) -> None:
    path, v1, v2, v3 = history
    fake_github.add_repo("acme/shop", path)
    access = GitHubAccess(token=fake_github.token, api_url=fake_github.url)
    assert compare_on_github(access, "acme/shop", v1, v2) == Change(
        1, 0, v1, f"https://github.com/acme/shop/compare/{v1}...{v2}"
    )
    assert compare_on_github(access, "acme/shop", v2, v1).words == "1 commit removed"
    diverged = fake_github.client().get_repo("acme/shop").compare(v2, v3)
    assert (diverged.status, diverged.ahead_by, diverged.behind_by) == ("diverged", 1, 1)
    assert [c.sha for c in diverged.commits] == [v3]
    assert diverged.commits[0].commit.message == "v3"
    assert diverged.merge_base_commit.sha == v1 and diverged.base_commit.sha == v2
    raw = fake_github.client().requester.requestJsonAndCheck(
        "GET", f"/repos/acme/shop/compare/{v1}...{v2}"
    )[1]
    assert set(COMPARE_REQUIRED) <= set(raw)
    assert raw["total_commits"] == len(raw["commits"]) == 1
    assert fake_github.violations == []


def test_compare_of_an_unknown_commit_is_not_found(
    fake_github: FakeGitHub, history: tuple[Path, str, str, str]
) -> None:
    from github import GithubException

    path, v1, _, _ = history
    fake_github.add_repo("acme/shop", path)
    access = GitHubAccess(token=fake_github.token, api_url=fake_github.url)
    with pytest.raises(GithubException) as raised:
        compare_on_github(access, "acme/shop", "0" * 40, v1)
    assert raised.value.status == 404
