"""Host keys are checked, always: an unpinned key is refused with its fingerprint and the line to
add; ``host_key_policy: accept-new`` stores each host's first key and refuses any other later.

The first part needs nothing running; the second runs against real sshd hosts and a real
Prefect API (where the learned keys are stored).
"""

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
from pydantic import SecretStr

from adapters import host_keys, ssh
from blocks import Environment
from tests.shop import Shop
from tests.testbed.hosts import SshKey, TestHost, wait_until

REPO = Path(__file__).resolve().parents[1]


def env_for(hosts: list[str], private_text: str = "k", **changes) -> Environment:
    return Environment(
        hosts=hosts,
        ssh_user="root",
        ssh_private_key=SecretStr(private_text),
        connect_timeout=3,
        deploy_path="/srv/app",
        restart_command="true",
        **changes,
    )


def line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}"


# --------------------------------------------------------------------------- no hosts needed
@pytest.mark.parametrize(
    ("host", "default_port", "name"),
    [
        ("web-1", 22, "web-1"),
        ("web-1:2222", 22, "[web-1]:2222"),
        ("web-1", 2200, "[web-1]:2200"),
        ("web-1:22", 2200, "web-1"),
    ],
)
def test_known_hosts_names_hosts_as_openssh_does(host: str, default_port: int, name: str) -> None:
    assert host_keys.known_hosts_name(host, default_port) == name


def test_an_unknown_key_on_another_port_is_refused_with_the_bracketed_line_to_add() -> None:
    key = paramiko.ECDSAKey.generate()
    env = env_for(["web-1:2222"])
    failed = ssh.why_unreachable(
        host_keys.UnknownHostKey.presented("[web-1]:2222", key), env, "web-1:2222", "check"
    )
    assert isinstance(failed, ssh.HostUnreachable)
    message = str(failed)
    assert message.startswith("web-1:2222: check failed: web-1 presented host key SHA256:")
    assert key.fingerprint in message and "host_key_policy: strict" in message
    assert "ssh-keygen -lf /etc/ssh/ssh_host_ecdsa_key.pub" in message
    assert message.endswith(f"add this line to ssh.known_hosts: {line('[web-1]:2222', key)}")


def test_accept_new_trusts_no_key_it_cannot_store() -> None:
    key = paramiko.ECDSAKey.generate()
    unsaved = env_for(["web-1"], host_key_policy="accept-new")  # no block to store the key in
    with pytest.raises(host_keys.HostKeyNotStored) as caught:
        host_keys.CheckHostKey(unsaved).missing_host_key(paramiko.SSHClient(), "web-1", key)
    message = str(ssh.why_unreachable(caught.value, unsaved, "web-1", "check"))
    assert message.startswith("web-1: check failed: web-1's host key was not trusted")
    with pytest.raises(host_keys.UnknownHostKey):
        host_keys.CheckHostKey(env_for(["web-1"])).missing_host_key(None, "web-1", key)


def test_config_apply_keeps_learned_keys_only_where_the_file_pins_nothing() -> None:
    k1, k1_new, k2, k3 = (paramiko.ECDSAKey.generate() for _ in range(4))
    saved = env_for(
        ["web-1", "web-2:2222", "web-3"],
        host_key_policy="accept-new",
        known_hosts=[line("web-1", k1), line("[web-2]:2222", k2), line("web-3", k3)],
    )
    new = env_for(
        ["web-1", "web-2:2222"],  # web-3 removed from the file
        host_key_policy="accept-new",
        known_hosts=[line("web-1", k1_new)],  # web-1 rebuilt: the file pins its new key
    )
    assert host_keys.keep_learned(saved, new) == [line("[web-2]:2222", k2)]
    assert host_keys.keep_learned(None, new) == []
    strict = new.model_copy(update={"host_key_policy": "strict"})
    assert host_keys.keep_learned(saved, strict) == [], "strict: the file is the whole truth"


# --------------------------------------------------------------------------- real hosts
def failure(env: Environment, host: str) -> str:
    """The message connecting to ``host`` and running a command fails with."""
    with pytest.raises(ssh.HostUnreachable) as caught, ssh.session(env, host, "check") as conn:
        conn.run("true", "check", timeout=10)
    assert caught.value.host == host and caught.value.step == "check"
    return str(caught.value)


def echo(env: Environment, host: str) -> str:
    with ssh.session(env, host, "check") as conn:
        return conn.run("echo ok", "check", timeout=10)


def fingerprint(host: TestHost) -> str:
    """The host key's fingerprint as OpenSSH prints it (computed apart from paramiko)."""
    pub = host.host_dir / "ssh_host_ed25519_key.pub"
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]


def logins(host: TestHost) -> int:
    return (host.host_dir / "sshd.log").read_text().count("Accepted publickey for root")


def start_sshd_on(host: TestHost, port: int) -> None:
    """A second sshd on the host, same host key, on ``port``."""
    host.run(
        [
            "/usr/sbin/sshd",
            "-f",
            str(host.host_dir / "sshd_config"),
            "-p",
            str(port),
            "-o",
            f"PidFile={host.host_dir / f'sshd-{port}.pid'}",
            "-E",
            str(host.host_dir / f"sshd-{port}.log"),
        ],
        check=True,
    )
    assert wait_until(lambda: (host.host_dir / f"sshd-{port}.pid").exists(), timeout=5)


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_without_known_hosts_a_host_is_refused_with_its_fingerprint_and_the_line_to_add(
    deploy_hosts: list[TestHost], ssh_key: SshKey
) -> None:
    host = deploy_hosts[0]
    unpinned = env_for([host.address], ssh_key.private_text)
    started = time.monotonic()
    message = failure(unpinned, host.address)
    print(f"measured: an unpinned host key refused in {time.monotonic() - started:.2f} s")
    assert f"presented host key {fingerprint(host)} (ssh-ed25519)" in message
    assert message.endswith(f"add this line to ssh.known_hosts: {host.known_hosts_line}")
    assert logins(host) == 0, "refused before logging in: no command ran on an unchecked host"

    pasted = message.rsplit("ssh.known_hosts: ", 1)[1]
    assert echo(env_for([host.address], ssh_key.private_text, known_hosts=[pasted]), host.address)
    assert logins(host) == 1

    start_sshd_on(host, 2222)
    other_port = f"{host.address}:2222"
    message = failure(env_for([other_port], ssh_key.private_text), other_port)
    pasted = message.rsplit("ssh.known_hosts: ", 1)[1]
    assert pasted == f"[{host.address}]:2222 {host.host_key}"
    pinned = env_for([other_port], ssh_key.private_text, known_hosts=[pasted])
    assert echo(pinned, other_port) == "ok"


LEARN_IN_ANOTHER_RUN = """
import logging, sys
from prefect.logging.configuration import setup_logging
from blocks import Environment
from adapters import ssh
setup_logging()  # first: Prefect's set-up takes the handlers off the loggers below its own
learned = logging.getLogger("prefect.adapters.host_keys")
learned.addHandler(logging.StreamHandler(sys.stdout))
learned.propagate = False  # its lines once, as they are
env = Environment.load(sys.argv[1])
for host in env.hosts:
    with ssh.session(env, host, "check") as conn:
        print(conn.run("hostname -I", "check", timeout=10))
"""


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def learned_log() -> list[str]:
    """What this process logs about learned host keys."""
    handler, logger = Lines(), logging.getLogger("prefect.adapters.host_keys")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_accept_new_stores_every_first_key_when_threads_and_runs_learn_at_once(
    deploy_hosts: list[TestHost], ssh_key: SshKey, prefect_server: None, learned_log: list[str]
) -> None:
    from prefect.settings import PREFECT_API_URL

    a, b = deploy_hosts
    env = env_for([a.address, b.address], ssh_key.private_text, host_key_policy="accept-new")
    env.save("keys-tofu", overwrite=True)
    env = Environment.load("keys-tofu")
    results: list[str] = []

    def connect(host: str) -> None:
        results.append(echo(env, host))

    with host_keys.host_keys_locked():  # every learner waits here, then they all go at once
        threads = [threading.Thread(target=connect, args=(h,)) for h in [a.address, b.address] * 2]
        for thread in threads:
            thread.start()
        other_run = subprocess.Popen(
            [sys.executable, "-c", LEARN_IN_ANOTHER_RUN, "keys-tofu"],
            cwd=REPO,
            env=dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value()),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(3)
        assert Environment.load("keys-tofu").known_hosts == [], "nothing is saved without the lock"
    for thread in threads:
        thread.join(timeout=60)
    output, _ = other_run.communicate(timeout=120)
    assert other_run.returncode == 0, output
    assert results == ["ok"] * 4

    stored = Environment.load("keys-tofu").known_hosts
    assert sorted(stored) == sorted([a.known_hosts_line, b.known_hosts_line]), "none lost"
    said = learned_log + [x for x in output.splitlines() if x.startswith("learned host key")]
    for host in (a, b):
        told = f"learned host key {fingerprint(host)} for {host.address} (accept-new)"
        assert said.count(told) == 1, said


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_accept_new_refuses_a_host_whose_key_changed_after_it_was_learned(
    deploy_hosts: list[TestHost], ssh_key: SshKey, prefect_server: None
) -> None:
    host = deploy_hosts[0]
    env_for([host.address], ssh_key.private_text, host_key_policy="accept-new").save(
        "keys-changed", overwrite=True
    )
    first_run = Environment.load("keys-changed")
    assert echo(first_run, host.address) == "ok"
    first_key, first_fingerprint = host.known_hosts_line, fingerprint(host)
    assert Environment.load("keys-changed").known_hosts == [first_key]

    host.new_host_key()
    logins_before = logins(host)
    for run in (Environment.load("keys-changed"), first_run):  # a new run, and the same run
        message = failure(run, host.address)
        assert (
            f"presented host key {fingerprint(host)}, but {first_fingerprint} is pinned" in message
        )
        assert "accept-new keeps the first key" in message
        assert message.endswith(f"put this line in ssh.known_hosts: {host.known_hosts_line}")
    assert logins(host) == logins_before, "no login to a host with a changed key"
    assert Environment.load("keys-changed").known_hosts == [first_key], "the first key stays"


@pytest.mark.e2e
def test_a_deploy_with_accept_new_learns_the_keys_says_so_and_the_next_one_checks_them(
    shop: Shop,
) -> None:
    from flows.deploy import deploy
    from tests.test_deploy_e2e import run_logs

    shop.save_env(known_hosts=[], host_key_policy="accept-new")
    first = deploy(app="shop", environment="staging", ref="v1", return_state=True)
    assert first.is_completed(), first.message
    said = run_logs(first.state_details.flow_run_id)
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host)
        assert f"learned host key {fingerprint(host)} for {host.address} (accept-new)" in said
    stored = Environment.load("shop-staging").known_hosts
    assert sorted(stored) == sorted(h.known_hosts_line for h in shop.hosts)

    shop.hosts[1].new_host_key()
    second = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    assert second.is_failed()
    print("second deploy:", second.message)
    changed = shop.hosts[1]
    assert f"{changed.address} presented host key {fingerprint(changed)}" in second.message
    assert not any("learned host key" in m for m in run_logs(second.state_details.flow_run_id))
    for host in shop.hosts:
        assert shop.repo.v1 in shop.serving(host), "nothing switched"
