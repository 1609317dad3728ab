"""``chatops up``: the system starts on embedded defaults and Ctrl-C stops all of it."""

import subprocess
from pathlib import Path

import pytest

from chatops.settings import DEPLOYMENTS
from tests.testbed.postgres import Postgres
from tests.up_server import ChatopsUp, get, post_json

pytestmark = pytest.mark.e2e


def test_up_serves_ui_and_flows_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    with ChatopsUp(tmp_path / "home") as up:
        assert f"Prefect UI: {up.base}" in up.output()
        assert get(f"{up.api}/health")[0] == 200
        status, page = get(f"{up.base}/")
        assert status == 200 and b"<html" in page.lower()
        assert (tmp_path / "home" / "prefect").is_dir(), "the database lives under CHATOPS_HOME"
        assert up.stop() == 0
        with pytest.raises(OSError):
            get(f"{up.api}/health")
    leftovers = subprocess.run(["pgrep", "-f", f"--port {up.port}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


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
