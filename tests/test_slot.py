"""Taking an app environment's slot (:mod:`flows.serial`) against a real Prefect API: a slow
answer is a busy server, not a deploy that runs; a refused slot names the deploy that holds it,
or says that none is seen.

Each case runs a small flow in this process that takes the slot, and reads what its run logged
from Prefect, as the UI shows it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.states import Running

from flows import serial
from model.summary import run_tags

APP = "slotprobe"


@flow(name="slot-probe")
def _take(name: str, environment: str) -> bool:
    lease_id, waited = serial.acquire(name, lambda: serial.slot_holder(APP, environment))
    serial.release_concurrency_slots_with_lease(lease_id)
    return waited


def _take_and_read_log(environment: str) -> tuple[bool, str]:
    """Run the probe flow for a fresh slot; whether it waited, and its run's log."""
    state = _take(serial.limit_name(APP, environment), environment, return_state=True)
    run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while True:  # the run's log reaches the API in batches
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            text = "\n".join(log.message for log in logs)
            if "Finished in state" in text or time.monotonic() > deadline:
                return state.result(), text
            time.sleep(0.2)


def _hold(environment: str, release_after: float, holder_run: UUID | None = None) -> None:
    """Take the environment's slot as another holder would, and let it go after a while."""
    name = serial.limit_name(APP, environment)
    serial.create_limit(name)
    with get_client(sync_client=True) as client:
        answer = serial.ask_for_slot(client, name)
    assert answer.lease_id is not None
    if holder_run is not None:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(
                holder_run,
                {
                    serial.LEASE_LABEL: str(answer.lease_id),
                    serial.SINCE_LABEL: datetime.now(UTC).isoformat(timespec="seconds"),
                    serial.BY_LABEL: "alice",
                },
            )
    timer = threading.Timer(
        release_after, serial.release_concurrency_slots_with_lease, [answer.lease_id]
    )
    timer.start()


@pytest.mark.usefixtures("prefect_server")
def test_a_slow_answer_for_a_free_slot_says_the_server_was_busy_not_that_a_deploy_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = serial.ask_for_slot

    def slow(client, name):  # noqa: ANN001, ANN202 - the server takes 1.5 s to answer
        time.sleep(1.5)
        return real(client, name)

    monkeypatch.setattr(serial, "ask_for_slot", slow)
    waited, log = _take_and_read_log(f"busy-{uuid4().hex[:8]}")
    assert waited is False
    assert "the Prefect server was busy and slow to answer; no other deploy held it" in log
    assert "Another deploy" not in log and "waiting for it" not in log


@pytest.mark.usefixtures("prefect_server")
def test_a_slot_held_with_no_deploy_running_says_so_and_is_taken_once_free() -> None:
    environment = f"held-{uuid4().hex[:8]}"
    _hold(environment, release_after=2.0)
    started = time.monotonic()
    waited, log = _take_and_read_log(environment)
    assert waited is True and time.monotonic() - started >= 2.0
    assert "is held, but no running deploy of it is seen" in log, log
    assert "Another deploy" not in log


@pytest.mark.usefixtures("prefect_server")
def test_a_slot_held_by_a_running_deploy_names_it() -> None:
    environment = f"run-{uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("slot-holder")
        deployment_id = client.create_deployment(flow_id, "holder")
        holder = client.create_flow_run_from_deployment(
            deployment_id, name="slotprobe@v1 → " + environment, tags=run_tags(APP, environment)
        )
        client.set_flow_run_state(holder.id, Running(), force=True)
    _hold(environment, release_after=2.0, holder_run=holder.id)
    waited, log = _take_and_read_log(environment)
    assert waited is True
    assert (
        f"Another deploy of this app environment is running ({serial.limit_name(APP, environment)}"
        f": slotprobe@v1 → {environment}, deploy by alice); waiting for it"
    ) in log, log
