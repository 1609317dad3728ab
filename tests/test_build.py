"""The build step: runs the app's build command once per commit and keeps the artifact."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.home import home
from adapters.sandbox import build_user, stream_as
from tasks.build import BuildFailed, build

ALLOWED = {"PATH", "LANG", "HOME", "USER", "LOGNAME", "JAVA_HOME", "MAVEN_OPTS", "GIT_COMMIT"}

SHA = "a" * 40


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "target").mkdir(parents=True)
    return tree


def run(tree: Path, command: str, glob: str = "target/*.war", sha: str = SHA):
    return build(sha=sha, build_command=command, artifact_glob=glob, worktree=str(tree))


def test_builds_once_per_commit(
    prefect_server: None, chatops_home: Path, tree: Path, open_parent: Path
) -> None:
    counter = open_parent / "builds"
    counter.touch(mode=0o666)
    counter.chmod(0o666)
    command = f"echo built >> {counter} && echo war > target/demo.war"
    first = run(tree, command)
    assert not first.cached and Path(first.artifact).read_text() == "war\n"
    second = run(tree, command)
    assert second.cached and second.artifact == first.artifact
    assert counter.read_text().count("built") == 1
    other = run(tree, command, sha="b" * 40)
    assert not other.cached and counter.read_text().count("built") == 2


@pytest.fixture
def open_parent(tmp_path: Path) -> Iterator[Path]:
    """A directory everyone may enter (pytest's own temporary directories are root's alone), so
    what a build cannot read there is kept from it by the file's own mode."""
    parent = Path(tempfile.mkdtemp(prefix="chatops-build-test-"))
    parent.chmod(0o711)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def test_build_sees_an_allow_listed_environment_as_the_build_user(
    prefect_server: None,
    tree: Path,
    open_parent: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chatops_home = open_parent / "home"
    monkeypatch.setenv("CHATOPS_HOME", str(chatops_home))
    secrets = {
        "CHATOPS_GITHUB_TOKEN": "ghp_supersecret",
        "FOO_TOKEN": "foo-secret",
        "SSH_AUTH_SOCK": "/tmp/ssh-agent-secret.sock",
        "AWS_ACCESS_KEY_ID": "AKIA-not-allow-listed",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SHOP_FLAVOUR", "vanilla")
    home().secret("probe", create=True)
    readable = open_parent / "readable.txt"
    readable.write_text("anyone may read this\n")
    readable.chmod(0o644)
    command = (
        "{ env; echo id=$(id -un); echo cwd=$PWD; "
        f"cat {readable} {chatops_home}/secrets/probe 2>&1; "
        "ls $CHATOPS_HOME 2>&1; "
        "cat /proc/1/environ /proc/$PPID/environ 2>&1 | tr '\\0' '\\n'; "
        "} > target/app.war"
    )
    built = build(
        sha=SHA,
        build_command=command,
        artifact_glob="target/*.war",
        worktree=str(tree),
        build_env=["SHOP_FLAVOUR", "NOT_SET_ANYWHERE"],
    )
    seen = Path(built.artifact).read_text()
    env = dict(line.split("=", 1) for line in seen.splitlines() if "=" in line)
    user = pwd.getpwnam("chatops-build")
    assert f"id={user.pw_name}" in seen
    assert env["GIT_COMMIT"] == SHA and env["SHOP_FLAVOUR"] == "vanilla"
    assert env["HOME"] == user.pw_dir and env["USER"] == env["LOGNAME"] == user.pw_name
    assert env["cwd"].startswith(f"{user.pw_dir}/builds/"), "a working copy of its own"
    assert "anyone may read this" in seen, "the build can read what is open to everyone"
    assert "Permission denied" in seen
    for value in [*secrets.values(), home().secret("probe")]:
        assert value not in seen
    assert set(env) <= {*ALLOWED, "SHOP_FLAVOUR", "id", "cwd", "PWD", "SHLVL", "_", "OLDPWD"}, env
    assert not (Path(user.pw_dir) / "builds" / Path(env["cwd"]).name).exists(), "removed after"


def test_without_the_build_user_the_build_fails_and_says_what_to_run(
    prefect_server: None, chatops_home: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATOPS_BUILD_USER", "no-such-build-user")
    marker = tree.parent / "ran"
    with pytest.raises(BuildFailed) as caught:
        run(tree, f"touch {marker}; echo war > target/a.war")
    message = str(caught.value)
    assert "'no-such-build-user' does not exist" in message
    assert "scripts/build-user.sh" in message
    assert not marker.exists(), "nothing was built as the deploy system's user"


def test_not_root_and_sudo_refuses_the_build_fails_and_says_what_to_do(
    prefect_server: None, chatops_home: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root, the build switches users through sudo; when sudo refuses, nothing is built."""
    monkeypatch.setattr("adapters.sandbox.os.geteuid", lambda: 12345)
    tools = tree.parent / "bin"
    tools.mkdir()
    sudo = tools / "sudo"  # what sudo -n says without a sudoers rule
    sudo.write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    sudo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    marker = tree.parent / "ran"
    with pytest.raises(BuildFailed) as caught:
        run(tree, f"touch {marker}; echo war > target/a.war")
    message = str(caught.value)
    assert "cannot run builds as chatops-build (sudo: a password is required)" in message
    assert "sudoers rule in docs/operations.md" in message
    assert not marker.exists()


def test_the_build_user_must_not_be_us(
    prefect_server: None, chatops_home: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATOPS_BUILD_USER", pwd.getpwuid(os.geteuid()).pw_name)
    with pytest.raises(BuildFailed, match="an unprivileged user of their own"):
        run(tree, "echo war > target/a.war")


def test_a_symlinked_artifact_is_read_as_the_build_user(
    prefect_server: None, chatops_home: Path, tree: Path
) -> None:
    """A build that points its artifact at a file only we may read gets an error, not the file
    (/etc/shadow: the build user can see that it exists, but not read it)."""
    with pytest.raises(BuildFailed, match="cannot read .*app.war: .*Permission denied"):
        run(tree, "ln -s /etc/shadow target/app.war")
    secret = home().ensure().secret("signing", create=True)
    with pytest.raises(BuildFailed, match="matched nothing"):
        run(tree, f"ln -s {chatops_home}/secrets/signing target/app.war", sha="b" * 40)
    artifacts = [p.read_bytes() for p in chatops_home.rglob("*.war")]
    assert not [a for a in artifacts if secret.encode() in a or b"root:" in a]


def test_a_failed_build_leaves_no_working_copy(
    prefect_server: None, chatops_home: Path, tree: Path
) -> None:
    with pytest.raises(BuildFailed):
        run(tree, "pwd; exit 1")
    builds = Path(pwd.getpwnam("chatops-build").pw_dir) / "builds"
    assert not [p for p in builds.glob(f"{SHA[:12]}-*")]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("true", "matched nothing"),
        ("touch target/a.war target/b.war", "matched target/a.war, target/b.war"),
    ],
)
def test_artifact_glob_must_match_one_file(
    prefect_server: None, chatops_home: Path, tree: Path, command: str, expected: str
) -> None:
    with pytest.raises(BuildFailed, match=expected):
        run(tree, command)


def test_failed_build_keeps_the_last_lines(
    prefect_server: None, chatops_home: Path, tree: Path
) -> None:
    command = "for i in $(seq 1 100); do echo line $i; done; echo 'ERROR: compile' >&2; exit 3"
    with pytest.raises(BuildFailed) as caught:
        run(tree, command)
    assert caught.value.tail[-1] == "ERROR: compile"
    assert "line 100" in caught.value.tail and "line 1" not in caught.value.tail
    assert len(caught.value.tail) <= 30
    assert str(caught.value).endswith("ERROR: compile"), "the message carries the output"


@pytest.mark.e2e  # the real Maven toolchain; shares the build user's archive with deploys
def test_maven_builds_the_example_offline(
    prefect_server: None, chatops_home: Path, app_repo, tmp_path: Path
) -> None:
    tree = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", app_repo.url, str(tree)], check=True)
    built = build(
        sha=app_repo.v2,
        build_command="mvn -B clean package",
        artifact_glob="target/*.war",
        worktree=str(tree),
    )
    assert Path(built.artifact).name == "demo.war"
    with zipfile.ZipFile(built.artifact) as war:
        names = war.namelist()
        props = [n for n in names if n.endswith(".properties")]
        assert any(app_repo.v2 in war.read(n).decode() for n in props)


@pytest.mark.e2e  # the real Maven toolchain; shares the build user's archive with deploys
def test_maven_starts_faster_from_the_second_build_on(
    prefect_server: None, chatops_home: Path, app_repo, tmp_path: Path
) -> None:
    """The first Maven build writes the class data sharing archive; later builds use it."""
    tree = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", app_repo.url, str(tree)], check=True)
    archives = Path(pwd.getpwnam("chatops-build").pw_dir) / ".cache" / "chatops-jvm"
    shutil.rmtree(archives, ignore_errors=True)  # as if this were the machine's first build
    command = 'mvn -B clean package && echo "$MAVEN_OPTS" > target/opts.war && rm target/demo.war'
    first = run(tree, command, sha=app_repo.v2)
    [archive] = archives.glob("maven-*.jsa")
    assert "ArchiveClassesAtExit" in Path(first.artifact).read_text()
    assert archive.stat().st_size > 1_000_000, "Maven's classes are in it"
    assert not list(archives.glob(".*")), "no partial archive is left behind"
    second = run(tree, command, sha=app_repo.v1)
    assert f"-XX:SharedArchiveFile={archive}" in Path(second.artifact).read_text()


def test_the_team_s_own_maven_options_win(
    prefect_server: None, chatops_home: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAVEN_OPTS", "-Xmx256m")
    built = run(tree, 'echo "$MAVEN_OPTS" > target/a.war')
    assert Path(built.artifact).read_text() == "-Xmx256m\n"


def test_an_interrupted_build_is_stopped_with_everything_it_started() -> None:
    """A cancelled run does not leave the build (or what it started in the background) running."""
    user = build_user()
    marker = f"sleep 3{os.getpid() % 1000:03d}"

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    argv = ["/bin/bash", "-c", f"{marker} & echo started; {marker}"]
    with pytest.raises(KeyboardInterrupt):
        stream_as(user, argv, user.environment(SHA), interrupt)
    left = subprocess.run(["pgrep", "-u", user.name, "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", "nothing of the build is left running"


def test_a_build_past_build_timeout_is_stopped_and_says_which_bound(
    prefect_server: None, chatops_home: Path, tree: Path
) -> None:
    """A hung build (a test waiting on the network, say) does not hold the environment forever:
    at ``build_timeout`` it is stopped, with what it started in the background, and the deploy
    fails naming the bound."""
    marker = f"sleep 4{os.getpid() % 1000:03d}"
    started = time.monotonic()
    with pytest.raises(BuildFailed) as caught:
        build(
            sha=SHA,
            build_command=f"echo compiling; {marker} & {marker}",
            artifact_glob="target/*.war",
            worktree=str(tree),
            timeout=2,
        )
    took = time.monotonic() - started
    print(f"measured: a build that hangs, build_timeout 2 s: failed after {took:.1f} s")
    assert "build_timeout (2 s)" in str(caught.value)
    assert caught.value.tail == ["compiling"], "the output so far is kept"
    assert took < 15
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", "nothing of the build is left running"
    builds = Path(pwd.getpwnam("chatops-build").pw_dir) / "builds"
    assert not [p for p in builds.glob(f"{SHA[:12]}-*")], "its working copy is removed"
