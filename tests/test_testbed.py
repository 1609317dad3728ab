"""Tests of the test bed itself: what the deploy pipeline's end-to-end tests rely on.

Real components only: network namespaces with sshd, Tomcat started by restart-tomcat.sh over
SSH, the example app built by Maven from the test git repository. Every network wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.testbed.gitrepo import AppRepo, build_war
from tests.testbed.hosts import (
    SshKey,
    TestHost,
    blackhole_present,
    destroy,
    live_namespaces,
    make_host,
    netns_hosts,
    preclean,
    process_alive,
)

pytestmark = pytest.mark.e2e


# --- helpers ------------------------------------------------------------------------------------


def ssh_connect(
    host: TestHost, key: SshKey, known_hosts: Path, timeout: float = 3
) -> paramiko.SSHClient:
    """SSH as root, accepting only the host keys listed in ``known_hosts``."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        host.address,
        username="root",
        key_filename=str(key.private),
        look_for_keys=False,
        allow_agent=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        channel_timeout=timeout,
    )
    return client


def ssh_run(client: paramiko.SSHClient, cmd: str, timeout: float = 15) -> tuple[int, str]:
    """Run ``cmd``; (exit status, stdout+stderr). Raises if the channel stays open > timeout."""
    _, stdout, stderr = client.exec_command(cmd, timeout=timeout)
    out = stdout.read() + stderr.read()
    if not stdout.channel.status_event.wait(timeout):
        raise TimeoutError(f"{cmd!r} did not finish within {timeout} s")
    return stdout.channel.recv_exit_status(), out.decode()


def pinned(tmp_path: Path, *lines: str) -> Path:
    """A known_hosts file with these lines."""
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def deploy_release(client: paramiko.SSHClient, war: Path, release: str) -> float:
    """What the pipeline does on a host: upload, switch ``current``, restart. Returns the
    duration of the restart command."""
    assert ssh_run(client, f"mkdir -p /srv/app/releases/{release}")[0] == 0
    with client.open_sftp() as sftp:
        sftp.put(str(war), f"/srv/app/releases/{release}/demo.war")
    rc, out = ssh_run(
        client,
        f"ln -sfn releases/{release} /srv/app/current.tmp && "
        "mv -T /srv/app/current.tmp /srv/app/current",
    )
    assert rc == 0, out
    started = time.monotonic()
    rc, out = ssh_run(client, "/srv/app/bin/restart-tomcat /srv/app", timeout=20)
    assert rc == 0, out
    return time.monotonic() - started


def health(host: TestHost, sha: str, timeout: float = 30) -> dict[str, str]:
    """Wait until /demo/health reports ``sha``; return the parsed JSON."""
    return json.loads(host.wait_http("/demo/health", contains=sha, timeout=timeout))


def java_pids(host: TestHost) -> list[int]:
    """Java processes running inside the host."""
    return [p for p in host.pids() if Path(f"/proc/{p}/comm").read_text().strip() == "java"]


@pytest.fixture(scope="module")
def wars(app_repo: AppRepo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """demo.war of v1 and v2, built as the pipeline does: GIT_COMMIT=<sha> mvn -B clean package"""
    workdir = tmp_path_factory.mktemp("builds")
    yield {sha: build_war(app_repo, sha, workdir) for sha in (app_repo.v1, app_repo.v2)}
    shutil.rmtree(workdir, ignore_errors=True)


# --- the pieces ---------------------------------------------------------------------------------


def test_ssh_key_is_an_ed25519_pair(ssh_key: SshKey) -> None:
    assert ssh_key.private_text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(ssh_key.private)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert derived[0] == "ssh-ed25519"
    assert ssh_key.public.read_text().split()[:2] == derived[:2]


def test_app_repo_has_two_deployable_commits(app_repo: AppRepo, tmp_path: Path) -> None:
    assert len(app_repo.v1) == len(app_repo.v2) == 40 and app_repo.v1 != app_repo.v2
    assert app_repo.git("rev-parse", "v1^{commit}") == app_repo.v1
    assert app_repo.git("rev-parse", "v2^{commit}") == app_repo.v2
    assert app_repo.git("rev-parse", "main") == app_repo.v2
    assert app_repo.git("rev-parse", "feature/login") == app_repo.v2
    assert app_repo.git("rev-parse", f"{app_repo.v2}^") == app_repo.v1
    v1_text, v2_text = app_repo.greetings[app_repo.v1], app_repo.greetings[app_repo.v2]
    assert v1_text not in v2_text and v2_text not in v1_text  # a page shows which one runs
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", app_repo.url, str(clone)], check=True, timeout=30)
    assert (clone / "pom.xml").is_file() and (clone / ".mvn" / "maven.config").is_file()
    assert not (clone / "target").exists()


def test_build_bakes_in_the_sha_or_unknown(
    app_repo: AppRepo, wars: dict[str, Path], tmp_path: Path
) -> None:
    for sha, war in wars.items():
        assert f"git.sha={sha}\n" in war_properties(war)
    clone = tmp_path / "plain"
    subprocess.run(["git", "clone", "-q", app_repo.url, str(clone)], check=True, timeout=30)
    env = {k: v for k, v in os.environ.items() if k != "GIT_COMMIT"}
    subprocess.run(
        ["mvn", "-B", "-q", "clean", "package"],
        cwd=clone,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert "git.sha=unknown\n" in war_properties(clone / "target" / "demo.war")


def war_properties(war: Path) -> str:
    with zipfile.ZipFile(war) as zf:
        return zf.read("WEB-INF/classes/app.properties").decode()


# --- hosts --------------------------------------------------------------------------------------


def test_hosts_have_own_address_and_filesystem(
    deploy_hosts: list[TestHost], ssh_key: SshKey, tmp_path: Path
) -> None:
    a, b = deploy_hosts
    assert a.address != b.address and a.ns != b.ns and a.root != b.root
    assert blackhole_present()
    known = pinned(tmp_path, a.known_hosts_line, b.known_hosts_line)
    for host in deploy_hosts:
        with (
            ssh_connect(host, ssh_key, known) as client,
            client.open_sftp() as sftp,
            sftp.open("/srv/app/whoami", "w") as fh,
        ):
            fh.write(host.address)
    assert (a.root / "whoami").read_text() == a.address
    assert (b.root / "whoami").read_text() == b.address
    assert a.run("cat /srv/app/whoami").stdout == a.address
    assert a.run("ip -o -4 addr show eth0").stdout.split()[3] == f"{a.address}/24"
    assert a.run("test -x /srv/app/bin/restart-tomcat").returncode == 0
    assert not Path("/srv/app/whoami").exists()  # the root filesystem was not touched


def test_tomcat_is_not_running_yet(deploy_hosts: list[TestHost]) -> None:
    for host in deploy_hosts:
        assert java_pids(host) == []
        with pytest.raises(OSError):
            host.http_get("/demo/health", timeout=1)


@pytest.mark.parametrize("deploy_hosts", [3], indirect=True)
def test_three_hosts_on_request(deploy_hosts: list[TestHost]) -> None:
    assert len({h.address for h in deploy_hosts}) == 3
    for host in deploy_hosts:
        with socket.create_connection((host.address, 22), timeout=2) as sock:
            assert sock.recv(64).startswith(b"SSH-2.0-")


def test_sshd_accepts_the_key_with_the_pinned_host_key(
    deploy_hosts: list[TestHost], ssh_key: SshKey, tmp_path: Path
) -> None:
    a, b = deploy_hosts
    with ssh_connect(a, ssh_key, pinned(tmp_path, a.known_hosts_line)) as client:
        assert ssh_run(client, "id -u") == (0, "0\n")
        assert f"inet {a.address}/24" in ssh_run(client, "ip -o -4 addr show eth0")[1]
    wrong = pinned(tmp_path, f"{a.address} {b.host_key}")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_connect(a, ssh_key, wrong)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_connect(a, ssh_key, pinned(tmp_path))


def test_restart_tomcat_over_ssh_serves_the_built_sha(
    deploy_hosts: list[TestHost],
    ssh_key: SshKey,
    app_repo: AppRepo,
    wars: dict[str, Path],
    tmp_path: Path,
) -> None:
    a, b = deploy_hosts
    known = pinned(tmp_path, a.known_hosts_line)
    with ssh_connect(a, ssh_key, known) as client:
        for release, sha in (("r1", app_repo.v1), ("r2", app_repo.v2)):
            # r1 starts Tomcat in the background; r2 is deployed into it and waited for
            assert deploy_release(client, wars[sha], release) < 15
            assert health(a, sha) == {"status": "UP", "sha": sha}
            status, page = a.http_get("/demo/")
            assert status == 200 and sha in page and app_repo.greetings[sha] in page
            assert len(java_pids(a)) == 1  # one Tomcat, no second one
        # without a war to switch to, the running app stays up
        rc, out = ssh_run(client, "rm /srv/app/current && /srv/app/bin/restart-tomcat")
        assert rc == 1 and "no /srv/app/current/demo.war" in out
        assert health(a, app_repo.v2, timeout=2)["sha"] == app_repo.v2
    [served] = (a.root / "tomcat" / "webapps").glob("*.war")  # r1's version was undeployed
    assert served.name.startswith("demo##") and served.name.endswith("-r2.war")
    assert served.read_bytes() == wars[app_repo.v2].read_bytes()
    with pytest.raises(OSError):
        b.http_get("/demo/health", timeout=1)  # the other host runs nothing


def test_restart_tomcat_without_a_release_fails_clearly(deploy_hosts: list[TestHost]) -> None:
    result = deploy_hosts[0].run("/srv/app/bin/restart-tomcat", timeout=20)
    assert result.returncode == 1
    assert "no /srv/app/current/demo.war" in result.stderr
    assert java_pids(deploy_hosts[0]) == []


# --- faults -------------------------------------------------------------------------------------


def test_kill_sshd_refuses_connections(
    deploy_hosts: list[TestHost], ssh_key: SshKey, tmp_path: Path
) -> None:
    a, b = deploy_hosts
    known = pinned(tmp_path, a.known_hosts_line, b.known_hosts_line)
    a.kill_sshd()
    started = time.monotonic()
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
        ssh_connect(a, ssh_key, known)
    assert time.monotonic() - started < 1
    ssh_connect(b, ssh_key, known).close()  # the other host is unaffected
    a.start_sshd()
    ssh_connect(a, ssh_key, known).close()


@pytest.mark.parametrize("fault", ["link_down", "drop_ssh"])
def test_unreachable_host_hangs_until_the_timeout(
    deploy_hosts: list[TestHost], ssh_key: SshKey, tmp_path: Path, fault: str
) -> None:
    a, b = deploy_hosts
    known = pinned(tmp_path, a.known_hosts_line, b.known_hosts_line)
    getattr(a, fault)()
    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        ssh_connect(a, ssh_key, known, timeout=1.5)
    assert 1.4 < time.monotonic() - started < 4
    ssh_connect(b, ssh_key, known).close()
    {"link_down": a.link_up, "drop_ssh": a.accept_ssh}[fault]()
    ssh_connect(a, ssh_key, known).close()


# --- teardown and leftovers -----------------------------------------------------------------------


def test_teardown_leaves_no_namespace_link_or_process(
    ssh_key: SshKey,
    testbed_ready: None,
    app_repo: AppRepo,
    wars: dict[str, Path],
    tmp_path: Path,
) -> None:
    with netns_hosts(1, ssh_key, tmp_path) as [host]:
        (host.root / "releases" / "r1").mkdir(parents=True)
        (host.root / "releases" / "r1" / "demo.war").write_bytes(wars[app_repo.v1].read_bytes())
        (host.root / "current").symlink_to("releases/r1")
        assert host.run("/srv/app/bin/restart-tomcat", timeout=20).returncode == 0
        health(host, app_repo.v1)
        pids = host.pids()
        assert java_pids(host) and host.sshd_pid in pids and host.holder_pid in pids
    assert_gone(host, pids)


def test_preclean_removes_hosts_of_aborted_runs(
    ssh_key: SshKey, testbed_ready: None, tmp_path: Path
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    leftover = make_host(ssh_key, tmp_path, owner_pid=gone.pid)
    try:
        ours = make_host(ssh_key, tmp_path)
        try:
            pids = leftover.pids()
            assert leftover.ns in preclean()
            assert_gone(leftover, pids)
            assert ours.ns in live_namespaces() and ours.sshd_pid is not None
        finally:
            destroy([ours.ns])
    finally:
        destroy([leftover.ns])


def assert_gone(host: TestHost, pids: list[int]) -> None:
    """The host's namespace, veth and processes no longer exist; no blackhole without hosts."""
    assert (
        host.ns
        not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert host.veth not in links
    assert not [p for p in pids if process_alive(p)]
    if " vr-" not in links:
        assert not blackhole_present()
