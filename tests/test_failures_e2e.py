"""Faults injected for real into a deploy, and what every host serves afterwards.

A restart that hangs or fails, packets dropped in the middle of an upload over a slow link, and
a failed deploy between two good ones (what "previous release" means). The deploy flow runs in
this process against the test Prefect server; the hosts are real sshd hosts with Tomcat.
"""

import threading
import time

import pytest

from adapters.ssh import store_seconds
from blocks import App
from flows.deploy import deploy
from flows.rollback import rollback
from tests.shop import DEPLOY_PATH, Shop, states

pytestmark = pytest.mark.e2e


def releases(host) -> list[str]:
    return sorted(p.name for p in (host.root / "releases").iterdir() if not p.name.startswith("."))


def partials(host) -> list[str]:
    folder = host.root / "releases"
    return (
        [p.name for p in folder.iterdir() if p.name.endswith(".partial")] if folder.exists() else []
    )


def break_restart(host, sha: str, how: str) -> None:
    """Make the host's restart misbehave (``how``: a shell snippet) for release ``sha`` only;
    every call is logged to /srv/app/RESTARTS with the sha it restarted."""
    host.run(
        f"mv {DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}/bin/real-restart && "
        f"printf '#!/bin/sh\\nrev=$(cat {DEPLOY_PATH}/current/REVISION)\\n"
        f"echo $rev >> {DEPLOY_PATH}/RESTARTS\\n"
        f'if [ "$rev" = {sha} ]; then {how}; fi\\n'
        f'exec {DEPLOY_PATH}/bin/real-restart "$@"\\n\' > {DEPLOY_PATH}/bin/restart-tomcat && '
        f"chmod +x {DEPLOY_PATH}/bin/restart-tomcat",
        check=True,
    )


def mend_restart(host) -> None:
    host.run(f"mv -f {DEPLOY_PATH}/bin/real-restart {DEPLOY_PATH}/bin/restart-tomcat", check=True)


def test_previous_means_the_last_good_release_and_pruning_keeps_it(shop: Shop) -> None:
    shop.save_env(keep_releases=2, health_timeout=8)
    good = deploy(app="shop", environment="staging", ref="v1")  # A
    sick = shop.hosts[1]
    break_restart(sick, shop.repo.v2, "exit 0")  # v2 never comes up there: B fails
    failed = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    assert failed.is_failed()
    mend_restart(sick)
    again = deploy(app="shop", environment="staging", ref="main")  # C, same commit as B
    for host in shop.hosts:
        assert good.release in releases(host), "pruning kept the previous good release"
        assert shop.current(host) == again.release

    back = rollback(app="shop", environment="staging")
    assert back.release == good.release, "not B's folder, the newest before C"
    for host in shop.hosts:
        assert shop.current(host) == good.release and shop.repo.v1 in shop.serving(host)
        history = [line.split()[1] for line in (host.root / "HISTORY").read_text().splitlines()]
        assert history == [good.release, again.release, good.release]


def test_a_hung_restart_is_killed_on_the_host_reported_and_not_run_again(shop: Shop) -> None:
    shop.save_env(command_timeout=4, health_timeout=30)
    deploy(app="shop", environment="staging", ref="v1")
    healthy, hung = shop.hosts
    break_restart(hung, shop.repo.v2, "sleep 3600")
    started = time.monotonic()
    state = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    took = time.monotonic() - started
    assert state.is_failed()
    message = str(state.message)
    assert f"{hung.address}: restart failed: did not finish in time" in message
    print(f"measured: a hung restart (command_timeout 4 s) failed the deploy in {took:.1f} s")
    assert took < 60, f"the deploy took {took:.0f} s to fail"
    left = hung.run("pgrep -f 'sleep 360[0]' || true").stdout.strip()  # not itself
    assert left == "", "the hung restart's processes were killed on the host"
    restarts = (hung.root / "RESTARTS").read_text().split()
    assert restarts.count(shop.repo.v2) == 1, "the rollback did not run the hung restart again"
    for host in shop.hosts:
        assert shop.current(host).endswith(shop.repo.v1[:7])
    assert shop.repo.v1 in shop.serving(healthy)
    deployment = shop.github.deployments[-1]
    assert states(shop.github, deployment["id"])[-1] == "error"
    assert hung.address in shop.github.statuses(deployment["id"])[-1]["description"]

    mend_restart(hung)
    after = deploy(app="shop", environment="staging", ref="v2")  # recovers, then deploys
    assert after.outcome == "success"
    for host in shop.hosts:
        assert shop.repo.v2 in shop.serving(host)
        assert not (host.root / "SWITCHING").exists()


def test_a_failing_restart_puts_its_host_back_on_the_release_it_ran(shop: Shop) -> None:
    """Activate switches and restarts in one SSH command: when the restart exits non-zero, the
    host is switched back and restarted on its previous release, and the failure names the
    restart and shows its output."""
    shop.save_env(health_timeout=60)
    deploy(app="shop", environment="staging", ref="v1")
    broken = shop.hosts[-1]
    break_restart(broken, shop.repo.v2, "echo port 8080 in use >&2; exit 3")
    state = deploy(app="shop", environment="staging", ref="v2", return_state=True)
    assert state.is_failed()
    message = str(state.message)
    assert f"{broken.address}: restart failed: exit code 3" in message, message
    assert "port 8080 in use" in message
    restarts = (broken.root / "RESTARTS").read_text().split()
    assert restarts[0] == shop.repo.v2 and set(restarts[1:]) == {shop.repo.v1}, restarts
    for host in shop.hosts:
        assert shop.current(host).endswith(shop.repo.v1[:7])
        assert shop.repo.v1 in shop.serving(host)
    assert not (broken.root / "SWITCHING").exists()
    mend_restart(broken)


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_packets_dropped_mid_upload_fail_within_the_bound_and_leave_no_partial(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host removes the partial upload by itself once its own bound is over: the upload's
    # bound plus the time it may take to store, 30 s by default; 5 s proves the same sooner.
    monkeypatch.setenv("CHATOPS_UPLOAD_STORE_SECONDS", "5")
    size, rate, stall = 6_000_000, 300_000, 3
    bound = 2 * stall + size / rate
    App(
        repository="acme/shop",
        clone_url=shop.repo.url,
        environments=["staging"],
        default_environment="staging",
        artifact_glob="target/*.war",
        build_command=f"mkdir -p target && head -c {size} /dev/urandom > target/big.war",
    ).save("shop", overwrite=True)
    shop.save_env(connect_timeout=stall, min_upload_rate=rate)
    stalled, fine = shop.hosts
    stalled.throttle("4mbit")
    outcome: dict = {}
    worker = threading.Thread(
        target=lambda: outcome.update(
            state=deploy(app="shop", environment="staging", ref="v1", return_state=True)
        ),
        daemon=True,
    )
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while not partials(stalled) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert partials(stalled), "the upload never began"
        time.sleep(1.0)
        stalled.drop_ssh()
        dropped = time.monotonic()
        worker.join(timeout=bound + 30)
        failed_after = time.monotonic() - dropped
        state = outcome["state"]
        assert state.is_failed()
        print(
            f"measured: dropped packets failed the upload {failed_after:.1f} s after the drop "
            f"(bound {bound:.0f} s)"
        )
        assert failed_after < bound, f"failed {failed_after:.0f} s after the drop (bound {bound})"
        message = str(state.message)
        assert f"{stalled.address}: upload failed" in message
        assert "dropping packets" in message or "no answer" in message
        deadline = time.monotonic() + bound + store_seconds() + 15
        while partials(stalled) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert partials(stalled) == [], "the host removed the partial upload by itself"
        print(
            f"measured: the host removed the partial upload {time.monotonic() - dropped:.1f} s "
            "after the drop"
        )
        assert partials(fine) == [] and len(releases(fine)) == 1
        assert not (stalled.root / "current").exists() and not (fine.root / "current").exists()
    finally:
        stalled.accept_ssh()
        stalled.unthrottle()
