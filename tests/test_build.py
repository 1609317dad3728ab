"""The build step: runs the app's build command once per commit and keeps the artifact."""

import subprocess
import zipfile
from pathlib import Path

import pytest

from tasks.build import BuildFailed, build

SHA = "a" * 40


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "target").mkdir(parents=True)
    return tree


def run(tree: Path, command: str, glob: str = "target/*.war", sha: str = SHA):
    return build(sha=sha, build_command=command, artifact_glob=glob, worktree=str(tree))


def test_builds_once_per_commit(prefect_server: None, chatops_home: Path, tree: Path) -> None:
    counter = tree.parent / "builds"
    command = f"echo built >> {counter} && echo war > target/demo.war"
    first = run(tree, command)
    assert not first.cached and Path(first.artifact).read_text() == "war\n"
    second = run(tree, command)
    assert second.cached and second.artifact == first.artifact
    assert counter.read_text().count("built") == 1
    other = run(tree, command, sha="b" * 40)
    assert not other.cached and counter.read_text().count("built") == 2


def test_build_sees_the_sha_but_not_our_secrets(
    prefect_server: None, chatops_home: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATOPS_GITHUB_TOKEN", "ghp_supersecret")
    monkeypatch.setenv("DEPLOY_API_TOKEN", "also-secret")
    run(tree, "env > target/env.txt && cp target/env.txt target/app.war")
    seen = (tree / "target" / "env.txt").read_text()
    assert f"GIT_COMMIT={SHA}" in seen
    assert "supersecret" not in seen and "also-secret" not in seen


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


def test_maven_starts_faster_from_the_second_build_on(
    prefect_server: None, chatops_home: Path, app_repo, tmp_path: Path
) -> None:
    """The first Maven build writes the class data sharing archive; later builds use it."""
    tree = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", app_repo.url, str(tree)], check=True)
    archives = chatops_home / "jvm"
    report = "target/opts.txt"
    command = f'mvn -B clean package && echo "$MAVEN_OPTS" > {report}'
    run(tree, command, sha=app_repo.v2)
    [archive] = archives.glob("maven-*.jsa")
    assert "ArchiveClassesAtExit" in (tree / report).read_text()
    assert archive.stat().st_size > 1_000_000, "Maven's classes are in it"
    assert not list(archives.glob(".*")), "no partial archive is left behind"
    run(tree, command, sha=app_repo.v1)
    assert f"-XX:SharedArchiveFile={archive}" in (tree / report).read_text()


def test_the_team_s_own_maven_options_win(
    prefect_server: None, chatops_home: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAVEN_OPTS", "-Xmx256m")
    run(tree, 'echo "$MAVEN_OPTS" > target/a.war')
    assert (tree / "target" / "a.war").read_text() == "-Xmx256m\n"
