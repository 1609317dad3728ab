"""SSH to hosts: keys, pinned host keys, release names, and parsing what hosts say."""

import subprocess
from datetime import UTC, datetime

import paramiko
import pytest
from pydantic import SecretStr

from blocks import Environment
from tasks.hosts import Release, connect, load_private_key, split_host


def test_release_ids_sort_by_time_and_name_the_commit() -> None:
    early = Release.new("1a2b3c4d" * 5, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = Release.new("ffff" * 10, datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.id == "20260102T030405Z-1a2b3c4"
    assert sorted([late.id, early.id]) == [early.id, late.id]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web-1", ("web-1", 22)),
        ("web-1:2222", ("web-1", 2222)),
        ("10.0.0.5", ("10.0.0.5", 22)),
    ],
)
def test_split_host(host: str, expected: tuple[str, int]) -> None:
    assert split_host(host, 22) == expected


def test_unreadable_private_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        load_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nsecretstuff\n")
    assert "secretstuff" not in str(caught.value)


def env_for(host, ssh_key, known_hosts: list[str]) -> Environment:
    return Environment(
        hosts=[host.address],
        ssh_user="root",
        ssh_private_key=SecretStr(ssh_key.private_text),
        known_hosts=known_hosts,
        connect_timeout=3,
        deploy_path="/srv/app",
        restart_command="true",
    )


@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_pinned_host_key_is_enforced(deploy_hosts, ssh_key, tmp_path) -> None:
    [host] = deploy_hosts
    with connect(env_for(host, ssh_key, [host.known_hosts_line]), host.address) as conn:
        assert conn.run("echo ok", hide=True).stdout.strip() == "ok"

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    impostor = f"{host.address} {' '.join((tmp_path / 'other.pub').read_text().split()[:2])}"
    with (
        pytest.raises(paramiko.BadHostKeyException),
        connect(env_for(host, ssh_key, [impostor]), host.address) as conn,
    ):
        conn.run("echo never", hide=True)
