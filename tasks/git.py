"""Check out the exact commit to deploy, from a local mirror of the app's repository.

Each repository is kept as one bare mirror under ``$CHATOPS_HOME/mirrors``; a deploy only
``git fetch``es it, resolves the ref to a full sha and adds a clean, detached work tree at that sha
for the build. Refs reach git only as single arguments after ``--end-of-options``, never through
a shell.
"""

import hashlib
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters.files import file_lock
from adapters.home import home
from adapters.task_ledger import HOOKS
from model.errors import DeployError, DeployFailure, worth_retrying

GIT_TIMEOUT = 600
TAIL_LINES = 20


class UnknownRef(DeployFailure, ValueError):
    """The ref names no commit in the repository."""


class GitFailed(DeployError, RuntimeError):
    """A git command failed: which one, its exit code and the last lines of what git said."""

    def __init__(self, command: str, exit_code: int, tail: list[str]) -> None:
        super().__init__(
            f"git {command} failed with exit code {exit_code}",
            step=f"git {command}",
            cause=f"exit code {exit_code}",
            tail=tail,
        )
        self.command, self.exit_code = command, exit_code


@dataclass(frozen=True)
class Checkout:
    """A detached work tree of ``sha``; remove it with :func:`remove_worktree` when done."""

    sha: str
    worktree: str


def mirror_path(clone_url: str) -> Path:
    """Where the mirror of ``clone_url`` lives: one per URL, named so a person can find it."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", clone_url.rstrip("/").split("/")[-1])[:60]
    digest = hashlib.sha256(clone_url.encode()).hexdigest()[:12]
    return home().mirrors / f"{name}-{digest}"


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git with ``args`` (no shell) and return its stdout; :class:`GitFailed` with git's
    own message otherwise."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        env=git_environment(),
    )
    if proc.returncode:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise GitFailed(args[0], proc.returncode, lines[-TAIL_LINES:])
    return proc.stdout.strip()


def git_environment() -> dict[str, str]:
    """What git may see of our environment: enough to find keys, never our tokens."""
    env = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    keep = ("PATH", "HOME", "SSH_AUTH_SOCK", "GIT_SSH_COMMAND")
    env.update({name: os.environ[name] for name in keep if name in os.environ})
    return env


def update_mirror(clone_url: str) -> Path:
    """Create the bare mirror on first use, ``git fetch`` it afterwards; return its path."""
    mirror = mirror_path(clone_url)
    home().ensure()  # before the mirrors below it exist: builds must not read them
    with file_lock(Path(f"{mirror}.lock")):  # one fetch of a mirror at a time
        if (mirror / "HEAD").exists():
            git("fetch", "--prune", "--quiet", "origin", cwd=mirror)
        else:
            git("clone", "--mirror", "--quiet", "--", clone_url, str(mirror))
    return mirror


def resolve(mirror: Path, ref: str) -> str:
    """The full sha ``ref`` (branch, tag or sha) names in ``mirror``, else :class:`UnknownRef`."""
    try:
        return git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", cwd=mirror
        )
    except GitFailed:
        raise UnknownRef(f"ref {ref!r} is not a branch, tag or commit of the repository") from None


def resolve_ref(clone_url: str, ref: str) -> str:
    """The full sha ``ref`` names in the app's repository, after fetching its mirror."""
    return resolve(update_mirror(clone_url), ref)


def commits_apart(mirror: Path, base: str, head: str) -> tuple[int, int]:
    """How many commits ``head`` has that ``base`` lacks, and how many ``base`` has that
    ``head`` lacks (added and removed, when ``head`` replaces ``base``), counted in ``mirror``."""
    counts = git("rev-list", "--left-right", "--count", f"{base}...{head}", cwd=mirror)
    removed, added = (int(n) for n in counts.split())
    return added, removed


def add_worktree(mirror: Path, sha: str) -> Path:
    """A fresh detached work tree of ``sha`` under ``$CHATOPS_HOME/worktrees``."""
    tree = home().worktrees / f"{sha[:12]}-{uuid.uuid4().hex[:8]}"
    tree.parent.mkdir(parents=True, exist_ok=True)
    git("worktree", "add", "--detach", "--force", "--quiet", str(tree), sha, cwd=mirror)
    return tree


def remove_worktree(checkout: Checkout) -> None:
    """Delete a work tree made by :func:`checkout` (its mirror forgets it too)."""
    tree = Path(checkout.worktree)
    common = git("rev-parse", "--git-common-dir", cwd=tree)
    git("worktree", "remove", "--force", str(tree), cwd=tree / common)


@task(
    name="checkout",
    task_run_name="checkout {ref}",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=worth_retrying,
    cache_policy=NO_CACHE,
    **HOOKS,
)
def checkout(clone_url: str, ref: str, sha: str | None = None) -> Checkout:
    """Fetch the app's mirror and add a clean work tree at ``sha`` (or at what ``ref`` names).

    ``sha`` wins when given (GitHub already resolved the ref); it must exist in the mirror.
    """
    logger = get_run_logger()
    mirror = update_mirror(clone_url)
    resolved = resolve(mirror, sha or ref)
    if sha and resolved != sha and not (len(sha) < 40 and resolved.startswith(sha)):
        raise UnknownRef(f"commit {sha} is not in the repository")
    tree = add_worktree(mirror, resolved)
    logger.info("Checked out %s at %s in %s", ref, resolved, tree)
    return Checkout(sha=resolved, worktree=str(tree))
