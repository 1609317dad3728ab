"""A run's own account of its task runs (:mod:`adapters.task_ledger`), against a real Prefect
API: a deploy-shaped flow writes every task run it ran, in its final state, before its own end,
without a log line per hook; the gateway answers a look at an ended run from that account even
when the server has recorded none of its task runs yet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from uuid import UUID

import pytest
from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.states import Completed

from adapters import task_ledger
from adapters.task_ledger import HOOKS
from chatops.gateway import RunReader
from flows.steps import hosts_flow

pytestmark = pytest.mark.usefixtures("prefect_server")


@task(name="probe-ok", task_run_name="ok {n}", **HOOKS)
def ok(n: int) -> int:
    time.sleep(0.05)
    return n


@task(name="probe-bad", task_run_name="bad", **HOOKS)
def bad() -> None:
    raise RuntimeError("no")


@hosts_flow("ledger-probe", lambda: "ledger probe")
def probe() -> list[int]:
    done = [future.result() for future in [ok.submit(n) for n in range(3)]]
    with contextlib.suppress(RuntimeError):
        bad()
    return done


def logs_of(run_id: UUID) -> list[str]:
    with get_client(sync_client=True) as client:
        found = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return [log.message for log in found]


def test_a_flow_writes_every_task_run_it_ran_before_it_ends() -> None:
    state = probe(return_state=True)
    run_id = state.state_details.flow_run_id

    async def read() -> list[dict] | None:
        async with get_client() as client:
            return await task_ledger.read(client, run_id)

    rows = asyncio.run(read())
    assert rows is not None
    assert sorted((r["name"], r["state_type"]) for r in rows) == [
        ("bad", "FAILED"),
        ("ok 0", "COMPLETED"),
        ("ok 1", "COMPLETED"),
        ("ok 2", "COMPLETED"),
    ]
    assert all(r["total_run_time"] >= 0.05 for r in rows if r["name"].startswith("ok"))
    deadline = time.monotonic() + 20
    while not any("Finished in state" in m for m in logs_of(run_id)):
        assert time.monotonic() < deadline, "the run's last log line never arrived"
        time.sleep(0.2)
    assert not [m for m in logs_of(run_id) if "hook" in m.lower()]


def test_an_ended_run_is_answered_from_its_account_even_before_the_server_records_a_task() -> None:
    rows = [
        {"id": f"t{n}", "name": f"finish host-{n}", "state_type": "COMPLETED", "total_run_time": 1}
        for n in range(3)
    ]

    async def go() -> tuple[dict, dict]:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("ledger-reader-probe")
            deployment_id = await client.create_deployment(flow_id, "probe")
            run_id = (await client.create_flow_run_from_deployment(deployment_id)).id
            reader = RunReader(client, deployments=("ledger-reader-probe/probe",))
            await client.set_flow_run_state(run_id, Completed(), force=True)
            without = await reader.run(run_id)  # an ended run that wrote none: as before
            await client.create_artifact(
                ArtifactCreate(
                    flow_run_id=run_id, key=task_ledger.KEY, type="table", data=json.dumps(rows)
                )
            )
            return without, await reader.run(run_id)

    without, answer = asyncio.run(go())
    assert without["complete"] is False and without["task_runs"] == []
    assert answer["complete"] is True
    assert answer["task_runs"] == rows
