"""``chatops up``: the system starts on embedded defaults (PostgreSQL of its own) and Ctrl-C
stops all of it; SQLite and an external PostgreSQL on request."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.home import Home
from chatops.postgres import PASSWORD_SECRET, bin_dir, postmaster
from chatops.settings import DEPLOYMENTS
from tests.testbed.postgres import Postgres
from tests.up_server import ChatopsUp, free_port, get, post_json

pytestmark = pytest.mark.e2e


def test_up_serves_ui_and_flows_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "home" / "postgres" / "data"
    with ChatopsUp(tmp_path / "home") as up:
        assert f"Prefect UI: {up.base}" in up.output()
        assert get(f"{up.api}/health")[0] == 200
        status, page = get(f"{up.base}/")
        assert status == 200 and b"<html" in page.lower()
        database = postmaster(data)
        assert database is not None, "PostgreSQL runs from CHATOPS_HOME/postgres"
        assert own_deployments(tmp_path / "home") == len(DEPLOYMENTS), "the runs are stored there"
        assert not list((tmp_path / "home" / "prefect").glob("*.db")), "no SQLite database"
        print(f"measured: chatops up ready {up.ready_seconds:.1f} s after its start (fresh home)")
        assert up.stop() == 0
        with pytest.raises(OSError):
            get(f"{up.api}/health")
    leftovers = subprocess.run(["pgrep", "-f", f"--port {up.port}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    assert postmaster(data) is None and not Path(f"/proc/{database}").exists()


def own_deployments(home: Path) -> int:
    """How many deployments the PostgreSQL of ``home`` holds (read with its password)."""
    port = (home / "postgres" / "data" / "postmaster.pid").read_text().splitlines()[3]
    counted = subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-At", "-h", "127.0.0.1", "-p", port, "-U", "postgres"]
        + ["-d", "prefect", "-c", "select count(*) from deployment"],
        env={**os.environ, "PGPASSWORD": Home(home).secret(PASSWORD_SECRET)},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(counted.stdout)


def test_sigkill_of_chatops_up_takes_its_postgresql_along_and_the_next_start_has_the_data(
    tmp_path: Path,
) -> None:
    data = tmp_path / "home" / "postgres" / "data"
    with ChatopsUp(tmp_path / "home") as up:
        database = postmaster(data)
        assert database is not None and up.process is not None
        up.process.kill()
        killed = time.monotonic()
        until_gone = time.monotonic() + 10
        while Path(f"/proc/{database}").exists() and time.monotonic() < until_gone:
            time.sleep(0.05)
        assert not Path(f"/proc/{database}").exists(), "PostgreSQL outlived chatops up"
        print(f"measured: PostgreSQL gone {time.monotonic() - killed:.1f} s after the SIGKILL")
        up.process.wait()
    with ChatopsUp(tmp_path / "home") as up:
        assert postmaster(data) not in (None, database)
        assert own_deployments(tmp_path / "home") == len(DEPLOYMENTS)


def test_up_on_sqlite_as_before_and_a_sqlite_home_is_told_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ChatopsUp(home, args=("--database", "sqlite")) as up:
        assert (home / "prefect" / "prefect.db").is_file(), "SQLite under CHATOPS_HOME/prefect"
        assert not (home / "postgres").exists(), "no PostgreSQL made"
        print(f"measured: chatops up --database sqlite ready {up.ready_seconds:.1f} s (fresh)")
        assert up.stop() == 0

    refused = subprocess.run(
        [sys.executable, "-m", "chatops.cli", "up", "--port", str(free_port())],
        env={**ChatopsUp(home).cli_env(), "CHATOPS_GATEWAY_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    for said in (
        f"{home} keeps the Prefect server's data in SQLite ({home / 'prefect' / 'prefect.db'})",
        "chatops up --database sqlite",
        "chatops up --database embedded",
        "chatops config apply chatops.yaml",
    ):
        assert said in refused.stderr, refused.stderr
    assert not (home / "postgres").exists(), "nothing moved before the choice"

    with ChatopsUp(home, args=("--database", "embedded")):
        assert own_deployments(home) == len(DEPLOYMENTS)
    with ChatopsUp(home):  # chosen once: the default from now on
        assert own_deployments(home) == len(DEPLOYMENTS)


def test_up_runs_the_prefect_server_on_postgresql_when_asked(
    tmp_path: Path, postgres: Postgres
) -> None:
    with ChatopsUp(tmp_path / "home", args=("--database", postgres.url)) as up:
        assert get(f"{up.api}/health")[0] == 200
        names = sorted(d["name"] for d in post_json(f"{up.api}/deployments/filter", {}, up.auth))
        assert names == ["chatops"] * len(DEPLOYMENTS)
        assert not list((tmp_path / "home" / "prefect").glob("*.db")), "no SQLite database"
        counted = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "-h",
                str(postgres.directory / "sock"),
                "-p",
                str(postgres.port),
                "-d",
                "prefect",
                "-Atc",
                "select count(*) from deployment",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert counted.stdout.strip() == str(len(DEPLOYMENTS)), "the deployments are in PostgreSQL"
        assert up.stop() == 0
