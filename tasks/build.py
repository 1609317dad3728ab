"""Build the artifact of one commit, once.

The App's build command runs as the build user in a working copy of the commit that user owns
(:mod:`adapters.sandbox`), with an environment built from an allow-list: ``PATH``, ``LANG``,
``JAVA_HOME``, ``MAVEN_OPTS``, the build user's ``HOME``, ``USER`` and ``LOGNAME``,
``GIT_COMMIT`` and the names the app lists in ``build_env``. Its output is streamed line by line
to the run's logs. The resulting file is kept in the artifact cache
(``$CHATOPS_HOME/artifacts``, or ``CHATOPS_ARTIFACT_CACHE`` on storage every worker sees) under
the commit sha and a digest of the build command and glob. A sha names the exact source tree, so
promoting the same commit to another environment, redeploying it, or deploying another app built
from the same commit never builds again. Two runs that need the same build at the same time
(on one machine or on several sharing the cache) take turns through a lock file: the second one
finds the artifact the first one made.

Maven is a short-lived JVM here, so builds get ``MAVEN_OPTS`` for a fast start unless the
runner's environment sets its own: the C1 compiler only, the serial collector, and a class data
sharing archive of Maven's own classes in the build user's home, written by the first build on
this machine (about 2 s more, once) and used by every later one. A build then takes about a
second less and half the CPU. The archive is keyed by the ``java`` and ``mvn`` installed; a stale
one is ignored by the JVM.
"""

import hashlib
import os
import shutil
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters.files import file_lock
from adapters.home import home
from adapters.sandbox import (
    BuildUser,
    SandboxUnavailable,
    TimedOut,
    build_user,
    matching_files,
    read_file,
    stream_as,
    working_copy,
)
from adapters.task_ledger import HOOKS
from model.errors import DeployFailure

TAIL_LINES = 30
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xlog:cds=off -Xlog:cds+dynamic=off"
_BUILD = """cd -- "$1" || exit 1
archive=$2 partial=
if [ -n "$archive" ]; then
  if [ -f "$archive" ]; then
    MAVEN_OPTS="$MAVEN_OPTS -XX:SharedArchiveFile=$archive"
  else
    partial="${archive%/*}/.${archive##*/}.$$"  # builds may run side by side
    mkdir -p -- "${archive%/*}"
    MAVEN_OPTS="$MAVEN_OPTS -XX:ArchiveClassesAtExit=$partial"
  fi
  export MAVEN_OPTS
fi
bash -c "$3"
code=$?
if [ -n "$partial" ]; then
  if [ "$code" = 0 ] && [ -f "$partial" ]; then mv -f -- "$partial" "$archive"; fi
  rm -f -- "$partial"
fi
exit "$code"
"""
"""Runs as the build user in its working copy: $1 the copy, $2 the class data sharing archive
("": none), $3 the build command."""


class BuildFailed(DeployFailure, RuntimeError):
    """The build command failed or did not produce exactly one artifact; ``tail`` says why."""

    def __init__(self, message: str, tail: list[str]) -> None:
        super().__init__(message, step="build", tail=tail)


@dataclass(frozen=True)
class Built:
    """Where the artifact of a build is, and whether it came from the cache."""

    artifact: str
    cached: bool


def cache_dir(sha: str, build_command: str, artifact_glob: str) -> Path:
    """Where the artifact of ``sha`` built by this recipe is kept."""
    recipe = hashlib.sha256(f"{build_command}\0{artifact_glob}".encode()).hexdigest()[:12]
    return home().artifacts / f"{sha}-{recipe}"


def cached_artifact(folder: Path) -> Path | None:
    found = list(folder.glob("*")) if folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def find_artifact(user: BuildUser, copy: Path, artifact_glob: str) -> Path:
    """The one file ``artifact_glob`` matches in the working copy; :class:`BuildFailed`
    otherwise."""
    matches = matching_files(user, copy, artifact_glob)
    if len(matches) != 1:
        listed = ", ".join(matches) or "nothing"
        raise BuildFailed(
            f"artifact glob {artifact_glob!r} must match exactly one file, matched {listed}", []
        )
    return copy / matches[0]


def jvm_archive(user: BuildUser) -> Path | None:
    """Where the build user's class data sharing archive for Maven is (None: no java or mvn)."""
    tools = [shutil.which("java"), shutil.which("mvn")]
    if not all(tools):
        return None
    installed = "\0".join(f"{os.path.realpath(t)}:{os.stat(t).st_mtime_ns}" for t in tools if t)
    key = hashlib.sha256(installed.encode()).hexdigest()[:12]
    return user.home / ".cache" / "chatops-jvm" / f"maven-{key}.jsa"


def maven_options(archive: Path | None) -> tuple[dict[str, str], str]:
    """``MAVEN_OPTS`` for a build (none: the runner's own win), and the archive it uses or
    writes ("" for none).

    >>> maven_options(Path("/home/m.jsa"))[1]
    '/home/m.jsa'
    """
    if "MAVEN_OPTS" in os.environ:
        return {}, ""
    return {"MAVEN_OPTS": FAST_JVM}, str(archive or "")


def run_build(
    user: BuildUser,
    copy: Path,
    build_command: str,
    sha: str,
    build_env: Sequence[str] = (),
    timeout: float | None = None,
) -> None:
    """Run ``build_command`` as ``user`` in ``copy`` with the allow-listed environment,
    streaming its output to the logs; :class:`BuildFailed` with the last lines if it fails or
    runs past ``timeout`` seconds (then it is stopped with every process it started)."""
    logger = get_run_logger()
    options, archive = maven_options(jvm_archive(user))
    env = {**user.environment(sha, build_env), **options}
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def show(line: str) -> None:
        tail.append(line)
        logger.info(line)

    argv = ["/bin/bash", "-c", _BUILD, "chatops-build", str(copy), archive, build_command]
    try:
        code = stream_as(user, argv, env, show, timeout)
    except TimedOut:
        raise BuildFailed(
            f"the build ran past its bound, build_timeout ({timeout:g} s), and was stopped "
            "with every process it started",
            list(tail),
        ) from None
    if code:
        raise BuildFailed(f"build command failed with exit code {code}", list(tail))


@task(name="build", task_run_name="build", cache_policy=NO_CACHE, **HOOKS)
def build(
    sha: str,
    build_command: str,
    artifact_glob: str,
    worktree: str,
    build_env: Sequence[str] = (),
    timeout: float | None = None,
) -> Built:
    """Build ``sha`` from the files in ``worktree`` unless the cache already holds its artifact.

    ``build_env`` names variables of our environment the build may see besides the fixed ones;
    ``timeout`` is the app's ``build_timeout``.
    """
    logger = get_run_logger()
    folder = cache_dir(sha, build_command, artifact_glob)
    if (hit := cached_artifact(folder)) is not None:
        logger.info("Already built %s: using %s", sha[:7], hit)
        return Built(artifact=str(hit), cached=True)
    home().ensure()  # before the cache below it exists: nobody else may read the home
    with file_lock(folder.with_name(f".{folder.name}.lock")):  # one build of a commit at a time
        if (hit := cached_artifact(folder)) is not None:  # built by a run we waited for
            logger.info("Built meanwhile by another run: using %s", hit)
            return Built(artifact=str(hit), cached=True)
        try:
            user = build_user()
        except SandboxUnavailable as exc:
            raise BuildFailed(str(exc), []) from None
        staging = folder.with_name(f".{folder.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            with working_copy(user, Path(worktree), sha) as copy:
                logger.info("Building %s as %s in %s", sha[:7], user.name, copy)
                run_build(user, copy, build_command, sha, build_env, timeout)
                artifact = find_artifact(user, copy, artifact_glob)
                read_file(user, artifact, staging / artifact.name)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, SandboxUnavailable | OSError):
                raise BuildFailed(str(exc), []) from None
            raise
        staging.rename(folder)
    size = (folder / artifact.name).stat().st_size
    logger.info("Built %s (%d bytes)", artifact.name, size)
    return Built(artifact=str(folder / artifact.name), cached=False)
