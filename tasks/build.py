"""Build the artifact of one commit, once.

The App's build command runs in the checked-out work tree through prefect-shell, its output
streamed line by line to the run's logs. The resulting file is kept in the artifact cache
(``$CHATOPS_HOME/artifacts``, or ``CHATOPS_ARTIFACT_CACHE`` on storage every worker sees) under
the commit sha and a digest of the build command and glob. A sha names the exact source tree, so
promoting the same commit to another environment, redeploying it, or deploying another app built
from the same commit never builds again. Two runs that need the same build at the same time
(on one machine or on several sharing the cache) take turns through a lock file: the second one
finds the artifact the first one made.

Maven is a short-lived JVM here, so builds get ``MAVEN_OPTS`` for a fast start unless the
runner's environment sets its own: the C1 compiler only, the serial collector, and a class data
sharing archive of Maven's own classes, written by the first build on this machine (about 2 s
more, once) and used by every later one. A build then takes about a second less and half the
CPU. The archive is keyed by the ``java`` and ``mvn`` installed; a stale one is ignored by the
JVM.
"""

import fcntl
import hashlib
import os
import shutil
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_shell import ShellOperation

from tasks.home import home

TAIL_LINES = 30
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xlog:cds=off -Xlog:cds+dynamic=off"
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PRIVATE_KEY", "API_KEY", "AUTH_STRING")


class BuildFailed(RuntimeError):
    """The build command failed or did not produce exactly one artifact; ``tail`` says why."""

    def __init__(self, message: str, tail: list[str]) -> None:
        self.message, self.tail = message, tail
        super().__init__(message + "".join(f"\n    {line}" for line in tail))

    def __reduce__(self) -> tuple:
        return (type(self), (self.message, self.tail))


@dataclass(frozen=True)
class Built:
    """Where the artifact of a build is, and whether it came from the cache."""

    artifact: str
    cached: bool


def cache_dir(sha: str, build_command: str, artifact_glob: str) -> Path:
    """Where the artifact of ``sha`` built by this recipe is kept."""
    recipe = hashlib.sha256(f"{build_command}\0{artifact_glob}".encode()).hexdigest()[:12]
    return home().artifacts / f"{sha}-{recipe}"


@contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """One build of a commit at a time, across processes sharing the artifact cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached_artifact(folder: Path) -> Path | None:
    found = list(folder.glob("*")) if folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def secret_variables() -> list[str]:
    """Names of environment variables a build must not see (tokens of this process)."""
    return sorted(
        name
        for name in os.environ
        if name.startswith("CHATOPS_") or any(w in name.upper() for w in _SECRET_WORDS)
    )


def find_artifact(worktree: Path, artifact_glob: str) -> Path:
    """The one file ``artifact_glob`` matches in ``worktree``; :class:`BuildFailed` otherwise."""
    matches = sorted(p for p in worktree.glob(artifact_glob) if p.is_file())
    if len(matches) != 1:
        listed = ", ".join(str(p.relative_to(worktree)) for p in matches) or "nothing"
        raise BuildFailed(
            f"artifact glob {artifact_glob!r} must match exactly one file, matched {listed}", []
        )
    return matches[0]


def jvm_archive() -> Path | None:
    """Where this machine's class data sharing archive for Maven is (None: no java or mvn)."""
    tools = [shutil.which("java"), shutil.which("mvn")]
    if not all(tools):
        return None
    installed = "\0".join(f"{os.path.realpath(t)}:{os.stat(t).st_mtime_ns}" for t in tools if t)
    return home().root / "jvm" / f"maven-{hashlib.sha256(installed.encode()).hexdigest()[:12]}.jsa"


def maven_options(archive: Path | None, writer: str) -> tuple[dict[str, str], Path | None]:
    """``MAVEN_OPTS`` for a build, and the archive file this build writes (if it writes one).

    >>> maven_options(Path("/home/m.jsa"), "42")[0]["MAVEN_OPTS"].split()[-1]
    '-XX:ArchiveClassesAtExit=/home/.m.jsa.42'
    """
    if "MAVEN_OPTS" in os.environ:
        return {}, None
    if archive is None:
        return {"MAVEN_OPTS": FAST_JVM}, None
    if archive.is_file():
        return {"MAVEN_OPTS": f"{FAST_JVM} -XX:SharedArchiveFile={archive}"}, None
    partial = archive.with_name(f".{archive.name}.{writer}")  # builds may run side by side
    return {"MAVEN_OPTS": f"{FAST_JVM} -XX:ArchiveClassesAtExit={partial}"}, partial


def run_build(worktree: Path, build_command: str, sha: str) -> None:
    """Run ``build_command`` in ``worktree`` with GIT_COMMIT=sha, streaming output to the logs."""
    unset = secret_variables()
    commands = ["exec 2>&1", *([f"unset {' '.join(unset)}"] if unset else []), build_command]
    archive = jvm_archive()
    options, writes = maven_options(archive, str(os.getpid()))
    if writes is not None:
        writes.parent.mkdir(parents=True, exist_ok=True)
    operation = ShellOperation(
        commands=commands,
        working_dir=worktree,
        stream_output=True,
        env={"GIT_COMMIT": sha, **options},
    )
    with operation:
        process = operation.trigger()
        try:
            process.wait_for_completion()
        except RuntimeError as exc:
            tail = list(deque(process.fetch_result(), maxlen=TAIL_LINES))
            raise BuildFailed(f"build command failed: {exc}", tail) from None
        finally:
            if writes is not None and archive is not None:
                if writes.is_file() and process.return_code == 0:
                    os.replace(writes, archive)
                writes.unlink(missing_ok=True)


@task(name="build", task_run_name="build", cache_policy=NO_CACHE)
def build(sha: str, build_command: str, artifact_glob: str, worktree: str) -> Built:
    """Build ``sha`` in ``worktree`` unless the cache already holds its artifact."""
    logger = get_run_logger()
    folder = cache_dir(sha, build_command, artifact_glob)
    if (hit := cached_artifact(folder)) is not None:
        logger.info("Already built %s: using %s", sha[:7], hit)
        return Built(artifact=str(hit), cached=True)
    with build_lock(folder):
        if (hit := cached_artifact(folder)) is not None:  # built by a run we waited for
            logger.info("Built meanwhile by another run: using %s", hit)
            return Built(artifact=str(hit), cached=True)
        run_build(Path(worktree), build_command, sha)
        artifact = find_artifact(Path(worktree), artifact_glob)
        staging = folder.with_name(f".{folder.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(artifact, staging / artifact.name)
        staging.rename(folder)
    logger.info("Built %s (%d bytes)", artifact.name, artifact.stat().st_size)
    return Built(artifact=str(folder / artifact.name), cached=False)
