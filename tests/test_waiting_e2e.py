# ruff: noqa: F811 - the tests take the imported `bed` fixture as a parameter
"""Nobody waits in silence, on a real ``chatops up`` with two sshd hosts running Tomcat.

- A deploy queued behind a slow one says who holds the environment, since when, and how to
  abort it: in the terminal (``chatops follow``) and on its Slack card (fake Slack), whose
  waiting line goes once it takes its turn.
- A CLI following a run when ``chatops up`` is SIGKILLed stops within its bound
  (``--give-up-after``) with the run's link and how to follow it again, exit code 4.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from chatops.cli.follow import POLL_MAX_SECONDS
from tests.gateway_support import DEPLOYS
from tests.test_abort_e2e import in_last_batch
from tests.test_crash_e2e import (  # noqa: F401 - bed is a fixture
    Bed,
    bed,
    delay_restart,
    mend_restart,
    processes_of,
    serves,
    until,
)
from tests.up_server import ChatopsUp, post_json

pytestmark = pytest.mark.e2e
SLOW_SECONDS = 25
"""The slow deploy's last restart: the second deploy waits at least this long."""
GIVE_UP_SECONDS = 15


def runs_named(up: ChatopsUp, prefix: str) -> list[dict]:
    runs = post_json(f"{up.api}/flow_runs/filter", {"sort": "START_TIME_DESC"}, up.auth)
    return [r for r in runs if r["name"].startswith(prefix)]  # type: ignore[index,union-attr]


def card_of(bed: Bed, title: str):  # noqa: ANN201 - a FakeMessage
    return next((m for m in bed.slack.top_level(DEPLOYS) if title in m.text), None)


def waiting_lines(message) -> list[str | None]:  # noqa: ANN001 - a FakeMessage
    """The card's waiting line in each version of it (None where it had none)."""
    lines = []
    for version in message.history:
        found = [b for b in version.blocks or [] if b.get("block_id") == "deploy_waiting"]
        lines.append(found[0]["elements"][0]["text"] if found else None)
    return lines


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_a_deploy_waiting_for_a_slow_one_names_the_holder_and_the_abort(bed: Bed) -> None:
    v1, v2 = bed.repo.v1, bed.repo.v2
    _, second = bed.hosts
    with bed.up() as up:
        bed.configure(up, health_timeout=60)
        bed.deploy(up, "v1")  # v1's build is cached from here on
        delay_restart(second, v2, f"sleep {SLOW_SECONDS}")
        holder = up.cli_process("deploy", "shop@v2", "to", "staging", user="erin")
        until(lambda: in_last_batch(bed), 120, "the slow deploy's last batch")
        [slow] = runs_named(up, "shop@v2")

        asked = time.monotonic()
        assert "shop@v1 → staging" in bed.slash(up, "shop@v1 to staging")["text"]
        until(lambda: runs_named(up, "shop@v1 → staging") or None, 20, "the waiting run")
        waiting = next(r for r in runs_named(up, "shop@v1") if r["state"]["type"] != "COMPLETED")
        follow = up.cli_process("follow", waiting["id"], user="erin")
        until(
            lambda: card_of(bed, "shop@v1") and any(waiting_lines(card_of(bed, "shop@v1"))),
            30,
            "the waiting line on the card",
        )
        print(
            f"measured: the card said who holds the slot {time.monotonic() - asked:.1f} s "
            "after the second deploy was asked"
        )

        out, _ = follow.communicate(timeout=180)
        holder_out, _ = holder.communicate(timeout=60)
        assert holder.returncode == 0, holder_out
        assert follow.returncode == 0, out
        slow_url = f"{up.base}/runs/flow-run/{slow['id']}"
        [line] = [ln for ln in out.splitlines() if "⏳" in ln]  # once: the holder did not change
        print(f"terminal: {line.strip()}")
        assert line.startswith(
            f"  ⏳ waiting for shop@v2 ({v2[:7]}) → staging ({slow_url}): "
            "deploy of shop@v2 by erin since "
        ), line
        assert line.endswith("UTC; abort it with `chatops abort shop in staging`"), line
        assert out.index("⏳") < out.index("✓"), "the waiting line comes before the run's steps"
        assert out.rstrip().endswith("→ staging: Completed"), out

        lines = waiting_lines(card_of(bed, "shop@v1"))
        shown = next(text for text in lines if text)
        print(f"card: {shown}")
        assert shown.startswith(
            f":hourglass: Waiting for <{slow_url}|shop@v2 ({v2[:7]}) → "
            "staging> (deploy of shop@v2 by erin since "
        ), shown
        assert shown.endswith("— abort it with `/deploy abort shop in staging`"), shown
        assert lines[-1] is None, "the waiting line stayed after the deploy took its turn"
        assert lines.index(shown) < len(lines) - 1
        assert all(serves(host, v1) for host in bed.hosts)
        assert not bed.slack.violations


@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_a_cli_following_a_run_when_chatops_up_is_killed_gives_up_within_its_bound(
    bed: Bed,
) -> None:
    v2 = bed.repo.v2
    _, second = bed.hosts
    with bed.up() as up:
        bed.configure(up, health_timeout=60)
        bed.deploy(up, "v1")
        delay_restart(second, v2, "sleep 60")
        follow = up.cli_process(
            "deploy",
            "shop@v2",
            "to",
            "staging",
            "--give-up-after",
            str(GIVE_UP_SECONDS),
            user="erin",
        )
        until(lambda: in_last_batch(bed), 120, "the last batch")
        [run] = runs_named(up, "shop@v2")
        assert up.process is not None
        up.process.kill()
        killed = time.monotonic()
        try:
            out, _ = follow.communicate(timeout=GIVE_UP_SECONDS + 60)
            ended = time.monotonic() - killed
        finally:
            follow.kill()
            until(lambda: not processes_of(bed.home), 10, "every process of chatops up gone")
            for pid in processes_of(bed.home):
                os.kill(pid, signal.SIGKILL)
        print(
            f"measured: SIGKILL of chatops up: the following CLI ended {ended:.1f} s later "
            f"(bound {GIVE_UP_SECONDS} s)"
        )
    mend_restart(second)
    assert follow.returncode == 4, out
    # The bound counts from the last answer, which came up to one poll before the kill.
    # the bound counts from the last answer, up to one pause between looks before the kill
    assert GIVE_UP_SECONDS - POLL_MAX_SECONDS <= ended <= GIVE_UP_SECONDS + 5, out
    # The gateway or the Prefect server behind it may be the first to go: either is named.
    assert out.count("lost contact with") == 1, out
    said = re.search(
        r"chatops: no answer from (the gateway|Prefect through the gateway) at (\S+) ", out
    )
    assert said and said.group(2) == up.gateway, out
    assert (
        f"for {GIVE_UP_SECONDS} s; the run may still be going: {up.base}/runs/flow-run/"
        f"{run['id']}; follow it again with `chatops follow {run['id']}` or check the UI"
    ) in out, out
