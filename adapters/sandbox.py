"""Run a branch's build as its own unprivileged OS user, with nothing of the deploy system's.

A build runs the branch's own code (its tests, its Maven plugins), so it is untrusted. It runs as
the build user (``CHATOPS_BUILD_USER``, default ``chatops-build``; ``scripts/build-user.sh``
creates it), in a working copy that user owns below its own home, with an environment made from
an allow-list. As that user it cannot read ``$CHATOPS_HOME`` (mode 0700), the runner's
``/proc/*/environ`` (another uid) or an SSH agent (no ``SSH_AUTH_SOCK``).

Switching users: as root through ``setpriv`` (util-linux), otherwise through ``sudo -n -u``
(the sudoers rule is in docs/operations.md). When neither works the build fails with what to
run; it never falls back to building as the deploy system's user.

Everything that touches the working copy after the build (finding the artifact, reading it,
removing the copy) runs as the build user too, so a symlink the build leaves behind cannot make
the deploy system read its own secrets into the artifact.
"""

import contextlib
import io
import os
import pwd
import signal
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.processes import group_running
from model.errors import DeployError

BUILD_USER_VARIABLE = "CHATOPS_BUILD_USER"
DEFAULT_BUILD_USER = "chatops-build"
PASSED_THROUGH = ("PATH", "LANG", "JAVA_HOME", "MAVEN_OPTS")
"""Variables of the runner's environment every build sees (when set); apps add ``build_env``."""
CREATE_HINT = "create it with `sudo scripts/build-user.sh`"
SUDO_HINT = (
    "run chatops as root, or allow this user to run builds with the sudoers rule in "
    "docs/operations.md"
)
_EXTRACT = 'umask 077 && mkdir -p -- "$1" && exec tar -x --no-same-owner -C "$1"'
_REMOVE = 'chmod -R u+rwX -- "$1" 2>/dev/null; rm -rf -- "$1"'
_LIST = """cd -- "$1" || exit 1
shopt -s globstar nullglob
IFS=
for found in $2; do [ -f "$found" ] && printf '%s\\0' "$found"; done
exit 0"""


class SandboxUnavailable(DeployError, RuntimeError):
    """The build cannot run as the build user; the message says what to do."""


@dataclass(frozen=True)
class BuildUser:
    """The unprivileged OS user builds run as."""

    name: str
    uid: int
    gid: int
    home: Path

    def command(self, argv: Sequence[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command line that runs ``argv`` as this user with exactly ``env``, and the
        environment to start that command line with."""
        if os.geteuid() == 0:
            switch = [
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.gid}",
                "--init-groups",
                "--no-new-privs",
                "--",
            ]
            return [*switch, *argv], env
        # sudo resets the environment; `env -i` then sets exactly ours (the sudoers rule allows
        # /usr/bin/env only).
        assignments = [f"{name}={value}" for name, value in env.items()]
        sudo = ["sudo", "-n", "-u", self.name, "--", "/usr/bin/env", "-i", *assignments]
        return [*sudo, *argv], {"PATH": os.environ.get("PATH", os.defpath)}

    def environment(self, sha: str, names: Sequence[str] = ()) -> dict[str, str]:
        """A build's whole environment: the allow-listed variables of ours, this user's
        identity and home, and ``GIT_COMMIT``."""
        env = {name: os.environ[name] for name in (*PASSED_THROUGH, *names) if name in os.environ}
        env.setdefault("PATH", os.defpath)
        env.update(HOME=str(self.home), USER=self.name, LOGNAME=self.name, GIT_COMMIT=sha)
        return env

    def basic_environment(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.home), "LC_ALL": "C"}


def build_user() -> BuildUser:
    """The build user of this machine; :class:`SandboxUnavailable` if it is missing or is us."""
    name = os.environ.get(BUILD_USER_VARIABLE) or DEFAULT_BUILD_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SandboxUnavailable(
            f"build user {name!r} does not exist on this machine: {CREATE_HINT} "
            f"(or set {BUILD_USER_VARIABLE} to the user builds run as)"
        ) from None
    if entry.pw_uid in (0, os.geteuid()):
        raise SandboxUnavailable(
            f"build user {name!r} is root or the deploy system's own user; builds run as an "
            f"unprivileged user of their own: {CREATE_HINT}"
        )
    return BuildUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def run_as(
    user: BuildUser,
    argv: Sequence[str],
    *,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | io.BufferedWriter = subprocess.PIPE,
    feed: Callable[[io.BufferedWriter], None] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a short command as ``user`` (``feed`` writes its stdin); raise
    :class:`SandboxUnavailable` when the switch itself fails."""
    line, env = user.command(argv, user.basic_environment())
    try:
        proc = subprocess.Popen(
            line,
            env=env,
            stdin=subprocess.PIPE if feed else stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise SandboxUnavailable(f"cannot run builds as {user.name}: {exc}; {SUDO_HINT}") from None
    if feed is not None:
        assert proc.stdin is not None
        try:
            feed(proc.stdin)  # type: ignore[arg-type]
        except BrokenPipeError:
            pass  # the command failed early: its exit code and stderr say why
        finally:
            proc.stdin.close()
            proc.stdin = None  # so that communicate() below does not flush it again
    out, err = proc.communicate()
    refused_by_sudo = proc.returncode and err.startswith(b"sudo:")
    if refused_by_sudo:
        said = err.decode(errors="replace").strip()
        raise SandboxUnavailable(f"cannot run builds as {user.name} ({said}); {SUDO_HINT}")
    return subprocess.CompletedProcess(line, proc.returncode, out, err)


class TimedOut(DeployError):
    """The command ran past its time and was stopped with everything it started."""


def stream_as(
    user: BuildUser,
    argv: Sequence[str],
    env: dict[str, str],
    on_line: Callable[[str], None],
    timeout: float | None = None,
) -> int:
    """Run ``argv`` as ``user`` with exactly ``env``, each line of its output (stdout and
    stderr) to ``on_line``; its exit code. After ``timeout`` seconds it is stopped, its whole
    process group, and :class:`TimedOut` raised."""
    line, start_env = user.command(argv, env)
    proc = subprocess.Popen(
        line,
        env=start_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole below
    )
    expired = threading.Event()
    # Reading its output blocks until the build closes it, so the bound is kept by a timer: it
    # stops the process group, which closes the output and ends the loop below.
    watchdog = threading.Timer(timeout or 0, lambda: (expired.set(), stop(proc)))
    if timeout is not None:
        watchdog.daemon = True
        watchdog.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if text := raw.decode(errors="replace").rstrip():
                on_line(text)
        code = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:  # we were interrupted (cancelled run): do not leave it running
            stop(proc)
    if expired.is_set():
        raise TimedOut(f"stopped after {timeout:g} s")
    return code


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a build we were interrupted in: its whole process group when we may signal it
    (as root), else the process we started (sudo passes the signal on). Returns once nothing of
    the group runs: what the build started in the background may outlive its own process by a
    moment, and is SIGKILLed after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (PermissionError, ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + grace
    while group_running(proc.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        time.sleep(0.02)


def _tar_tree(tree: Path) -> Callable[[io.BufferedWriter], None]:
    """A writer of ``tree`` as a tar stream, without its ``.git``."""

    def skip_git(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        top = info.name.split("/", 1)[0]
        return None if top == ".git" else info

    def write(out: io.BufferedWriter) -> None:
        with tarfile.open(fileobj=out, mode="w|") as archive:
            for child in sorted(tree.iterdir()):
                archive.add(child, arcname=child.name, filter=skip_git)

    return write


@contextmanager
def working_copy(user: BuildUser, tree: Path, sha: str) -> Iterator[Path]:
    """A copy of ``tree`` (without ``.git``) that ``user`` owns, below its home; removed after,
    also when the build fails."""
    copy = user.home / "builds" / f"{sha[:12]}-{uuid.uuid4().hex[:8]}"
    try:
        made = run_as(user, ["/bin/sh", "-c", _EXTRACT, "sh", str(copy)], feed=_tar_tree(tree))
        if made.returncode:
            said = made.stderr.decode(errors="replace").strip()
            raise SandboxUnavailable(
                f"cannot make the working copy {copy} as build user {user.name}: {said} "
                f"(does its home {user.home} exist? {CREATE_HINT})"
            )
        yield copy
    finally:
        run_as(user, ["/bin/sh", "-c", _REMOVE, "sh", str(copy)])


def matching_files(user: BuildUser, copy: Path, glob: str) -> list[str]:
    """The regular files ``glob`` (bash, ``**`` included) matches in ``copy``, as the build user
    sees them; relative, sorted."""
    listed = run_as(user, ["/bin/bash", "-c", _LIST, "bash", str(copy), glob])
    return sorted(name.decode() for name in listed.stdout.split(b"\0") if name)


def read_file(user: BuildUser, path: Path, destination: Path) -> None:
    """Copy ``path`` to ``destination`` reading it as the build user (whatever it links to)."""
    with open(destination, "wb") as out:
        done = run_as(user, ["/bin/cat", "--", str(path)], stdout=out)  # type: ignore[arg-type]
    if done.returncode:
        raise OSError(f"cannot read {path}: {done.stderr.decode(errors='replace').strip()}")
