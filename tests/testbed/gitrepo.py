"""A real git repository of the example web app, with two commits to deploy and tell apart.

The repository's top level is ``examples/webapp`` (``pom.xml`` at the root), so the pipeline's
unmodified ``mvn -B clean package`` in a checkout builds ``target/demo.war`` offline.

History: ``v1`` (tag) = the example app as it is in this project; ``v2`` (tag) = the same with a
different greeting on the start page ``/demo/``. Branches ``main`` and ``feature/login`` point at
v2; ``main`` is checked out.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.testbed.hosts import REPO_ROOT, sh

EXAMPLE_WEBAPP = REPO_ROOT / "examples" / "webapp"
GREETING_FILE = Path("src/main/resources/app.properties")
V2_GREETING = "Welcome back: the demo app, now with login"
_GIT = [
    "git",
    "-c",
    "user.name=Testbed",
    "-c",
    "user.email=testbed@example.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "init.defaultBranch=main",
]


@dataclass(frozen=True)
class AppRepo:
    """The example app's repository: ``.url`` is what ``git clone`` accepts (the path).

    ``.v1`` / ``.v2`` are full shas; ``.greetings[sha]`` is the heading ``/demo/`` shows for it.
    """

    path: Path
    v1: str
    v2: str
    greetings: dict[str, str]

    @property
    def url(self) -> str:
        return str(self.path)

    def git(self, *args: str) -> str:
        """Run a git command in the repository, return its stripped stdout."""
        return _git(self.path, *args)


def _git(cwd: Path, *args: str) -> str:
    return sh([*_GIT, *args], cwd=cwd).stdout.strip()


def _set_greeting(repo: Path, greeting: str) -> None:
    path = repo / GREETING_FILE
    path.write_text(
        re.sub(r"^greeting=.*$", f"greeting={greeting}", path.read_text(), flags=re.MULTILINE)
    )


def _commit(repo: Path, message: str, tag: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    _git(repo, "tag", tag)
    return _git(repo, "rev-parse", "HEAD")


def make_app_repo(dest: Path, source: Path = EXAMPLE_WEBAPP) -> AppRepo:
    """Create the repository at ``dest`` (must not exist) from ``source``; see the module doc."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("target"))
    _git(dest, "init", "-q", "-b", "main")
    v1 = _commit(dest, "Demo app v1", "v1")
    _set_greeting(dest, V2_GREETING)
    v2 = _commit(dest, "Demo app v2: new greeting", "v2")
    _git(dest, "branch", "feature/login", v2)
    greetings = {v1: _greeting_at(dest, v1), v2: V2_GREETING}
    return AppRepo(path=dest, v1=v1, v2=v2, greetings=greetings)


def _greeting_at(repo: Path, sha: str) -> str:
    text = _git(repo, "show", f"{sha}:{GREETING_FILE.as_posix()}")
    match = re.search(r"^greeting=(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def build_war(repo: AppRepo, sha: str, workdir: Path, timeout: float = 180) -> Path:
    """Clone ``repo``, check out ``sha`` and build it the way the pipeline does
    (``GIT_COMMIT=<sha> mvn -B clean package``); return the path of ``target/demo.war``."""
    checkout = workdir / f"checkout-{sha[:12]}"
    sh(["git", "clone", "-q", repo.url, str(checkout)])
    sh(["git", "-c", "advice.detachedHead=false", "checkout", "-q", sha], cwd=checkout)
    env = {**os.environ, "GIT_COMMIT": sha}
    sh(["mvn", "-B", "clean", "package"], cwd=checkout, env=env, timeout=timeout)
    return checkout / "target" / "demo.war"
