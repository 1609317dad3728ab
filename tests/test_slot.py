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
from prefect.logging.handlers import APILogHandler
from prefect.states import Running

from flows import serial
from model.summary import run_tags

APP = "slotprobe"
REFUSED = threading.Event()
"""Set once the probe was refused the slot and looked who holds it: the holder lets go then."""


@flow(name="slot-probe")
def _take(name: str, environment: str) -> bool:
    def held_by() -> serial.SlotHolder | None:
        holder = serial.slot_holder(APP, environment)
        REFUSED.set()
        return holder

    lease_id, waited = serial.acquire(name, held_by)
    serial.release_concurrency_slots_with_lease(lease_id)
    return waited


def _take_and_read_log(environment: str) -> tuple[bool, str]:
    """Run the probe flow for a fresh slot; whether it waited, and its run's log."""
    state = _take(serial.limit_name(APP, environment), environment, return_state=True)
    run_id = state.state_details.flow_run_id
    APILogHandler().flush()  # send the run's log now, not at the next batch
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


def _hold(environment: str, holder_run: UUID | None = None) -> None:
    """Take the environment's slot as another holder would, and let it go once the probe was
    refused it (:data:`REFUSED`)."""
    REFUSED.clear()
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

    def release_once_refused() -> None:
        REFUSED.wait(timeout=60)
        serial.release_concurrency_slots_with_lease(answer.lease_id)

    threading.Thread(target=release_once_refused, daemon=True).start()


@pytest.mark.usefixtures("prefect_server")
def test_a_slow_answer_for_a_free_slot_says_the_server_was_busy_not_that_a_deploy_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = serial.ask_for_slot
    monkeypatch.setattr(serial, "SLOW_ANSWER_SECONDS", 0.2)  # the product's is 1 s

    def slow(client, name):  # noqa: ANN001, ANN202 - the server takes 0.4 s to answer
        time.sleep(0.4)
        return real(client, name)

    monkeypatch.setattr(serial, "ask_for_slot", slow)
    waited, log = _take_and_read_log(f"busy-{uuid4().hex[:8]}")
    assert waited is False
    assert "the Prefect server was busy and slow to answer; no other deploy held it" in log
    assert "Another deploy" not in log and "waiting for it" not in log


@pytest.mark.usefixtures("prefect_server")
def test_a_slot_held_with_no_deploy_running_says_so_and_is_taken_once_free() -> None:
    environment = f"held-{uuid4().hex[:8]}"
    _hold(environment)
    waited, log = _take_and_read_log(environment)
    assert waited is True
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
    _hold(environment, holder_run=holder.id)
    waited, log = _take_and_read_log(environment)
    assert waited is True
    assert (
        f"Another deploy of this app environment is running ({serial.limit_name(APP, environment)}"
        f": slotprobe@v1 → {environment}, deploy by alice); waiting for it"
    ) in log, log
