"""Hosts: release names, the record of what ran, recovery decisions, and SSH failures a person
can act on (refused, timeout, no route, wrong key, wrong host key, a failing or hanging command).

The first half is pure logic and needs no root; the second half runs against real sshd hosts.
"""

import pickle
import subprocess
import time
from datetime import UTC, datetime

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import SecretStr

from adapters import ssh
from blocks import App, Environment, UnknownTarget
from flows.audiences import redact
from flows.rollback import choose_release
from model.releases import HostState, Release, Switching, recovery
from model.target import Target
from tasks.git import UnknownRef
from tasks.health import health_url
from tasks.hosts import parse_state, switch_command
from tests.testbed.hosts import SshKey, TestHost

# --------------------------------------------------------------------------- pure logic


def test_release_ids_sort_by_time_and_name_the_commit() -> None:
    early = Release.new("1a2b3c4d" * 5, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = Release.new("ffff" * 10, datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.id == "20260102T030405Z-1a2b3c4"
    assert sorted([late.id, early.id]) == [early.id, late.id]


@pytest.mark.parametrize(
    ("host", "expected"),
    [("web-1", ("web-1", 22)), ("web-1:2222", ("web-1", 2222)), ("10.0.0.5", ("10.0.0.5", 22))],
)
def test_split_host(host: str, expected: tuple[str, int]) -> None:
    assert ssh.split_host(host, 22) == expected


@pytest.mark.parametrize(
    ("template", "host", "url"),
    [
        ("http://{host}:8080/health", "web-1", "http://web-1:8080/health"),
        ("http://{host}:8080/health", "web-1:2222", "http://web-1:8080/health"),
        ("https://lb.example/health", "web-1", "https://lb.example/health"),
    ],
)
def test_health_url_uses_the_host_name_not_its_ssh_port(template, host, url) -> None:
    assert health_url(template, host) == url


def test_unreadable_private_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        ssh.load_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nsecretstuff\n")
    assert "secretstuff" not in str(caught.value)


A, B, C, D = (
    "20260101T000000Z-aaaaaaa",
    "20260102T000000Z-bbbbbbb",
    "20260103T000000Z-ccccccc",
    ("20260104T000000Z-ddddddd"),
)


def test_previous_means_the_release_that_last_ran_successfully() -> None:
    # A deployed fine, B failed and was rolled back (its folder stays), C deployed fine.
    state = HostState(current=C, releases={A: "a", B: "b", C: "c"}, history=[A, C])
    assert (state.good, state.previous_good) == (C, A)
    assert state.keep(1) == {A, C}, "pruning keeps the previous good release, never B's folder"


def test_pruning_keeps_current_good_previous_and_anything_a_switch_names() -> None:
    state = HostState(
        current=D,
        releases={A: "a", B: "b", C: "c", D: "d"},
        history=[A, B],
        switching=Switching(B, D, "run-1"),
    )
    assert state.keep(2) == {A, B, C, D}
    assert HostState(C, {A: "a", B: "b", C: "c"}, [A, B, C]).keep(2) == {B, C}


@pytest.mark.parametrize(
    ("state", "serves", "succeeded", "action", "release"),
    [
        # a run died after switching: back to the last good release
        (HostState(B, {A: "a", B: "b"}, [A], Switching(A, B, "r")), True, False, "switch", A),
        # its switch finished and the run completed: only the record is missing
        (HostState(B, {A: "a", B: "b"}, [A], Switching(A, B, "r")), True, True, "record", B),
        # it died before switching: nothing to undo but the marker
        (HostState(A, {A: "a", B: "b"}, [A], Switching(A, B, "r")), True, False, "clear", A),
        # switched back but never restarted on it
        (HostState(A, {A: "a", B: "b"}, [A], Switching(A, B, "r")), False, False, "restart", A),
        # the very first deploy died: no earlier release anywhere
        (HostState(B, {B: "b"}, [], Switching(None, B, "r")), True, False, "clear", None),
        # no run died, but the app does not serve what current names
        (HostState(A, {A: "a"}, [A]), False, False, "restart", A),
        (HostState(A, {A: "a"}, [A]), True, False, "none", A),
        (HostState(A, {A: "a"}, [A]), None, False, "none", A),
        (HostState(None), None, False, "none", None),
    ],
)
def test_recovery_brings_a_host_back_to_one_release(state, serves, succeeded, action, release):
    plan = recovery(state, serves, succeeded)
    assert (plan.action, plan.release) == (action, release), plan.reason


def test_parse_state_reads_what_the_host_listed() -> None:
    listing = "\n".join(
        [
            f"current {B}",
            f"switching {A} {B} 9f1c",
            f"history 2026-01-01T00:00:00Z {A} run-1",
            f"release {A} {'a' * 40}",
            f"release {B} {'b' * 40}",
            f"partial .{C}.partial",
        ]
    )
    assert parse_state(listing) == HostState(
        current=B,
        releases={A: "a" * 40, B: "b" * 40},
        history=[A],
        switching=Switching(A, B, "9f1c"),
        partials=[f".{C}.partial"],
    )


def test_the_switch_journals_before_it_switches() -> None:
    env = env_for("h", "k", [])
    command = switch_command(env, B, run_id="run-7", keep=False)
    assert command.index("SWITCHING") < command.index("ln -sfn")
    assert "run-7" in command and command.startswith(f"test -d /srv/app/releases/{B} &&")
    assert " ; " not in command, "every part depends on the one before"


def test_host_failures_name_host_step_cause_and_output_and_survive_pickling() -> None:
    failed = ssh.RemoteCommandFailed("web-2", "restart", "exit code 3", ["boot", "port in use"], 3)
    assert str(failed) == "web-2: restart failed: exit code 3\n    boot\n    port in use"
    again = pickle.loads(pickle.dumps(failed))
    assert (type(again), str(again), again.exit_code) == (type(failed), str(failed), 3)


# --------------------------------------------------------------------------- real hosts


def env_for(address: str, private_text: str, known_hosts: list[str], **changes) -> Environment:
    return Environment(
        hosts=[address],
        ssh_user="root",
        ssh_private_key=SecretStr(private_text),
        known_hosts=known_hosts,
        connect_timeout=3,
        deploy_path="/srv/app",
        restart_command="true",
        **changes,
    )


def failure(env: Environment, host: str, command: str = "true", timeout: float = 10) -> str:
    """The message a step on ``host`` fails with."""
    with pytest.raises(ssh.HostFailed) as caught, ssh.session(env, host, "check") as conn:
        conn.run(command, "check", timeout=timeout)
    assert caught.value.host == host and caught.value.step == "check"
    return str(caught.value)


@pytest.fixture
def one(deploy_hosts: list[TestHost], ssh_key: SshKey) -> tuple[TestHost, Environment]:
    host = deploy_hosts[0]
    return host, env_for(host.address, ssh_key.private_text, [host.known_hosts_line])


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_a_pinned_host_key_is_enforced_and_a_mismatch_shows_both_fingerprints(
    one, ssh_key: SshKey, tmp_path
) -> None:
    host, env = one
    with ssh.session(env, host.address, "check") as conn:
        assert conn.run("echo ok", "check", timeout=10) == "ok"
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    impostor = f"{host.address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}"
    message = failure(env_for(host.address, ssh_key.private_text, [impostor]), host.address)
    assert "presented host key SHA256:" in message and "is pinned" in message
    assert "update known_hosts" in message


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_unreachable_hosts_get_a_cause_to_check(one, tmp_path) -> None:
    host, env = one
    other = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    stranger = env_for(host.address, other.read_text(), [host.known_hosts_line])
    assert "refused user 'root' with key SHA256:" in timed_failure("a wrong key", stranger, host)
    assert "authorized_keys" in failure(stranger, host.address)
    host.drop_ssh()
    assert f"no answer from {host.address}:22 within 3 s" in failure(env, host.address)
    host.accept_ssh()
    host.kill_sshd()
    refused = timed_failure("sshd down", env, host)
    assert f"connection refused on {host.address}:22: is sshd running" in refused
    host.start_sshd()
    subprocess.run(["ip", "link", "set", host.veth, "down"], check=True)
    try:
        assert f"no route to {host.address}:22" in failure(env, host.address)
    finally:
        subprocess.run(["ip", "link", "set", host.veth, "up"], check=True)


def timed_failure(situation: str, env, host) -> str:
    """The failure of a check on ``host``, with how long it took to fail printed for the docs."""
    started = time.monotonic()
    message = failure(env, host.address)
    print(f"measured: {situation}: the check failed in {time.monotonic() - started:.2f} s")
    return message


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_a_failing_command_carries_its_exit_code_and_last_lines(one) -> None:
    host, env = one
    script = "for i in $(seq 1 40); do echo line $i; done; echo 'port 8080 in use' >&2; exit 3"
    with (
        pytest.raises(ssh.RemoteCommandFailed) as caught,
        ssh.session(env, host.address, "x") as c,
    ):
        c.run(script, "restart", timeout=10)
    assert caught.value.exit_code == 3
    assert caught.value.tail[-1] == "port 8080 in use" and "line 40" in caught.value.tail
    assert len(caught.value.tail) == ssh.TAIL_LINES
    assert str(caught.value).startswith(f"{host.address}: restart failed: exit code 3")


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_a_hanging_command_is_killed_on_the_host_with_its_children(one) -> None:
    host, env = one
    hang = ssh.bounded("sleep 301 & sleep 302; echo never", 1)
    with pytest.raises(ssh.CommandHung) as caught, ssh.session(env, host.address, "x") as c:
        c.run(hang, "restart", timeout=15)
    assert "did not finish in time" in str(caught.value)
    left = host.run("pgrep -f 'sleep 30[12]' || true").stdout.strip()
    assert left == "", f"processes left on the host: {left}"


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_sessions_reuse_one_connection_per_host_and_close_it_after(one) -> None:
    host, env = one
    with ssh.sessions():
        with ssh.session(env, host.address, "a") as first:
            pass
        with ssh.session(env, host.address, "b") as second:
            assert second.connection is first.connection and second.connection.is_connected
    assert not first.connection.is_connected


@pytest.mark.e2e
@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_the_tasks_of_a_run_share_its_sessions(one, prefect_server: None) -> None:
    """Prefect runs tasks in threads with a copy of the run's context: they see its sessions."""
    host, env = one

    @task
    def connection_of(step: str) -> int:
        with ssh.session(env, host.address, step) as h:
            assert h.run("echo ok", step) == "ok"
            return id(h.connection)

    @flow(task_runner=ThreadPoolTaskRunner(4))
    def two_steps() -> list[int]:
        with ssh.sessions():
            first = connection_of.submit("check").result()
            return [first, connection_of.submit("upload").result()]

    first, second = two_steps()
    assert first == second, "the second task opened a connection of its own"


# --------------------------------------------------------------------------- release choice
def rollback_target() -> Target:
    env = env_for("h", "k", [])
    return Target("shop", App(repository="acme/shop"), "staging", env, "v1", ["h1", "h2"])


def test_rollback_goes_back_to_the_previous_good_release_every_host_has() -> None:
    one = HostState(C, {A: "a" * 40, B: "b" * 40, C: "c" * 40}, [A, C])
    two = HostState(C, {A: "a" * 40, C: "c" * 40}, [A, C])
    assert choose_release(rollback_target(), None, [one, two]).id == A
    assert choose_release(rollback_target(), "c" * 7, [one, two]).id == C
    assert choose_release(rollback_target(), A, [one, two]).id == A


@pytest.mark.parametrize(
    ("states", "ref", "message"),
    [
        ([HostState(C, {C: "c"}, [C]), HostState(C, {C: "c"}, [C])], None, "no release that ran"),
        ([HostState(C, {A: "a", C: "c"}, [A, C]), HostState(C, {C: "c"}, [C])], None, "kept on"),
        ([HostState(C, {A: "a", C: "c"}, [A, C])], "b" * 7, "no release of 'bbbbbbb'"),
    ],
)
def test_rollback_refuses_what_not_every_host_can_go_back_to(states, ref, message) -> None:
    with pytest.raises(UnknownTarget, match=message):
        choose_release(rollback_target(), ref, states)


def test_rollback_finds_the_release_of_a_tag_a_branch_or_a_short_sha() -> None:
    states = [HostState(C, {A: "a" * 40, C: "cafe" + "c" * 36}, [A, C])]
    tags = {"v1.4.2": "a" * 40, "main": "cafe" + "c" * 36}

    def resolve(ref: str) -> str:
        if ref not in tags:
            raise UnknownRef(ref)
        return tags[ref]

    assert choose_release(rollback_target(), "v1.4.2", states, resolve).id == A
    assert choose_release(rollback_target(), "main", states, resolve).id == C
    assert choose_release(rollback_target(), "cafe", states, resolve).id == C


def test_rollback_to_a_pruned_release_says_so_and_how_to_deploy_it() -> None:
    states = [HostState(C, {C: "c" * 40}, [C])]
    with pytest.raises(UnknownTarget) as refused:
        choose_release(rollback_target(), "v1.4.2", states, lambda ref: "d" * 40)
    message = str(refused.value)
    assert "'v1.4.2' is commit ddddddd" in message and "no longer on every host" in message
    assert "`deploy shop@v1.4.2 to staging`" in message
    with pytest.raises(UnknownTarget, match="no release of 'v9'"):
        choose_release(rollback_target(), "v9", states, _unknown_ref)


def _unknown_ref(ref: str) -> str:
    raise UnknownRef(f"ref {ref!r} is not a branch, tag or commit of the repository")


def test_rollback_refuses_a_sha_start_that_fits_several_commits() -> None:
    states = [HostState(C, {A: "abcd1" + "0" * 35, C: "abcd2" + "0" * 35}, [A, C])]
    with pytest.raises(UnknownTarget, match="several deployed commits"):
        choose_release(rollback_target(), "abcd", states)


def test_redaction_covers_every_line_of_a_key() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nAAAAbm9uZQ==\n-----END X-----"
    leaked = f"auth failed: {key.splitlines()[1]} / ghp_0123456789abcdef0123"
    assert redact(leaked, [key, "ghp_0123456789abcdef0123"]) == "auth failed: *** / ***"
