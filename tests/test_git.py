"""The checkout step: a mirror per repository, fetched, and a clean work tree at the exact sha."""

import subprocess
import time
from pathlib import Path

import pytest

from tasks.git import UnknownRef, checkout, mirror_path, remove_worktree

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def commit(repo: Path, text: str) -> str:
    (repo / "file.txt").write_text(text)
    subprocess.run([*GIT, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", text], check=True)
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    return repo


def test_checkout_branch_tag_and_sha(prefect_server: None, chatops_home: Path, repo: Path) -> None:
    first = commit(repo, "one")
    subprocess.run(["git", "-C", str(repo), "tag", "v1"], check=True)
    subprocess.run(["git", "-C", str(repo), "checkout", "-qb", "feature/login"], check=True)
    second = commit(repo, "two")
    for ref, sha in (("v1", first), ("feature/login", second), (first[:10], first)):
        out = checkout(str(repo), ref)
        assert out.sha == sha
        assert (Path(out.worktree) / "file.txt").read_text() == ("one" if sha == first else "two")
        remove_worktree(out)
        assert not Path(out.worktree).exists()


def test_new_commits_are_fetched_into_the_mirror(
    prefect_server: None, chatops_home: Path, repo: Path
) -> None:
    commit(repo, "one")
    checkout(str(repo), "main")
    newer = commit(repo, "two")
    assert checkout(str(repo), "main").sha == newer
    assert (mirror_path(str(repo)) / "HEAD").exists()


@pytest.mark.parametrize("ref", ["nope", "--upload-pack=touch /tmp/pwned", "main..v1"])
def test_unknown_ref_fails_at_once(
    prefect_server: None, chatops_home: Path, repo: Path, ref: str
) -> None:
    commit(repo, "one")
    started = time.monotonic()
    with pytest.raises(UnknownRef):
        checkout(str(repo), ref)
    assert time.monotonic() - started < 2, "an unknown ref must not be retried"
    assert not Path("/tmp/pwned").exists()


def test_given_sha_must_exist(prefect_server: None, chatops_home: Path, repo: Path) -> None:
    commit(repo, "one")
    with pytest.raises(UnknownRef):
        checkout(str(repo), "main", sha="0" * 40)
