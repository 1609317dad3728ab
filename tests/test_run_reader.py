"""What the gateway reads of a run for ``chatops`` to follow (:class:`chatops.gateway.RunReader`),
against a real Prefect API: every task run however many there are (more than one page of the
API), and, with a cursor, only the ones that ended since.

The run and its task runs are made through the API (a deployment, a flow run of it, task runs
created in their final state), so the task runs have the end times Prefect's orchestration gives
them.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from prefect import task
from prefect.client.orchestration import PrefectClient, get_client
from prefect.states import Completed, Failed, Running

from chatops import gateway
from chatops.gateway import RunReader, cursor_time

DEPLOYMENT = "watch-probe/probe"
PAGE = 20
"""A page shorter than the gateway's 200: three full pages and a part take 65 task runs."""


@task(name="probe-step")
def _step() -> None: ...


async def _a_run(client: PrefectClient) -> UUID:
    flow_id = await client.create_flow_from_name("watch-probe")
    deployment_id = await client.create_deployment(flow_id, "probe")
    return (await client.create_flow_run_from_deployment(deployment_id)).id


async def _finish(client: PrefectClient, run_id: UUID, names: list[str], state=Completed) -> None:
    """Task runs that ended now (one after the other: the test server is on SQLite)."""
    for name in names:
        await client.create_task_run(
            _step.with_options(name=name), run_id, dynamic_key=name, name=name, state=state()
        )


def _names(answer: dict) -> list[str]:
    return [t["name"] for t in answer["task_runs"]]


@pytest.mark.usefixtures("prefect_server")
def test_every_task_run_is_read_past_one_page_and_a_cursor_reads_only_what_ended_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway, "SINCE_LAG_SECONDS", 0.0)  # no margin: exactly what is new

    async def go() -> tuple[dict, dict, dict]:
        async with get_client() as client:
            run_id = await _a_run(client)
            reader = RunReader(client, deployments=(DEPLOYMENT,), page=PAGE)
            many = [f"host-{n:03d}" for n in range(3 * PAGE + 5)]
            await _finish(client, run_id, many)
            await client.create_task_run(_step, run_id, dynamic_key="open", state=Running())
            everything = await reader.run(run_id)
            await asyncio.sleep(0.05)
            await _finish(client, run_id, ["late-1", "late-2"])
            await _finish(client, run_id, ["late-3"], state=Failed)
            since = await reader.run(run_id, cursor_time(everything["cursor"]))
            nothing_new = await reader.run(run_id, cursor_time(since["cursor"]))
            return everything, since, nothing_new

    everything, since, nothing_new = asyncio.run(go())
    assert len(everything["task_runs"]) == 3 * PAGE + 6  # all of them, the open one too
    finished = [t["name"] for t in everything["task_runs"] if t["state_type"] == "COMPLETED"]
    assert sorted(finished) == [f"host-{n:03d}" for n in range(3 * PAGE + 5)]
    assert [t["state_type"] for t in everything["task_runs"]].count("RUNNING") == 1
    assert set(_names(since)) - set(_names(everything)) == {"late-1", "late-2", "late-3"}
    # only what ended since the cursor (the last one seen may come again: "at or after")
    assert len(since["task_runs"]) <= 4
    assert {t["state_type"] for t in since["task_runs"] if t["name"] == "late-3"} == {"FAILED"}
    assert cursor_time(since["cursor"]) > cursor_time(everything["cursor"])
    assert set(_names(nothing_new)) <= {"late-1", "late-2", "late-3"}
    assert nothing_new["cursor"] == since["cursor"]


def test_a_cursor_must_name_its_time_zone() -> None:
    assert cursor_time(None) is None
    assert cursor_time("2026-12-07T10:00:03.5+00:00").tzinfo is not None
    with pytest.raises(ValueError):
        cursor_time("2026-12-07T10:00:03")
    with pytest.raises(ValueError):
        cursor_time("yesterday")
    with pytest.raises(ValueError):
        cursor_time("0001-01-01T00:00:00+00:00")  # no time a second before it


@pytest.mark.usefixtures("prefect_server")
def test_a_follow_with_a_cursor_the_gateway_did_not_give_is_refused_clearly() -> None:
    from tests.gateway_support import RecordingCreator, cli_headers, save_config
    from tests.gateway_support import gateway as test_gateway

    save_config()
    path = "/cli/runs/7c0ffee0-0000-4000-8000-000000000001"
    with test_gateway(RecordingCreator()) as client:
        for since in ("yesterday", "2026-12-07T10:00:03", "0001-01-01T00:00:00+00:00"):
            answer = client.get(path, params={"since": since}, headers=cli_headers())
            assert answer.status_code == 400, since
            assert answer.json() == {"error": "since: not a cursor this gateway gave"}
        good = client.get(
            path, params={"since": "2026-12-07T10:00:03+00:00"}, headers=cli_headers()
        )
        assert good.status_code == 404  # a well-formed cursor: the run is looked up (and unknown)
