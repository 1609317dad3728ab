"""The gateway's endpoint for Prefect's silent-run automation (``POST /prefect/silent-runs``).

Against the test Prefect server, with the real gateway app: a call without the shared secret
is refused and changes nothing; a call naming a run that is still Running marks it Crashed and
tells Slack once, however often it comes; finished runs and runs of other flows are left alone.
The automation itself is checked end to end in tests/test_dead_runs_e2e.py.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.events import emit_event
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Running
from starlette.testclient import TestClient

from adapters import heartbeat
from blocks import SlackAccess
from chatops.dead_runs import AUTOMATION, silent_run_trigger, wait_for_the_api
from chatops.settings import SILENT_RUNS_HEADER, SILENT_RUNS_PATH
from flows.deploy import deploy
from flows.report import REPORTED_LABEL
from tests.fakes.slack_api import FakeSlack
from tests.gateway_support import DEPLOYS, SETTINGS, gateway, save_config

SECRET = "silent-runs-secret-for-tests"


@pytest.fixture(scope="module")
def gateway_with_secret(prefect_server: None) -> Iterator[TestClient]:
    """The gateway with the secret set, one for the module: it starts the settling process at
    the first call (which loads the flow code, seconds), and the tests' runs are each their own.
    The process it settles runs in finds the test server."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
        save_config()
        with gateway(settings=replace(SETTINGS, silent_runs_secret=SECRET)) as test_client:
            yield test_client


@pytest.fixture
def client(gateway_with_secret: TestClient, fake_slack: FakeSlack) -> TestClient:
    """The module's gateway, telling this test's Slack (the settling process loads the Slack
    block for each run it reports)."""
    SlackAccess(bot_token=fake_slack.token, api_url=fake_slack.api_url).save(
        "default", overwrite=True
    )
    return gateway_with_secret


def running_deploy() -> FlowRun:
    """A deploy run of shop to staging, Running, whose requester waits in #deploys."""
    parameters = {
        "app": "shop",
        "environment": "staging",
        "ref": "v2",
        "notify": {"channel": DEPLOYS},
    }
    with get_client(sync_client=True) as prefect:
        run = prefect.create_flow_run(deploy, parameters=parameters, state=Running())
        return prefect.read_flow_run(run.id)


def call(client: TestClient, run_id: object, secret: str | None = SECRET) -> tuple[int, dict]:
    headers = {SILENT_RUNS_HEADER: secret} if secret is not None else {}
    answer = client.post(
        SILENT_RUNS_PATH, json={"flow_run": f"prefect.flow-run.{run_id}"}, headers=headers
    )
    return answer.status_code, answer.json()


def state_of(run_id: uuid.UUID) -> str:
    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_run(run_id).state_name or ""


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
def test_a_call_without_the_secret_is_refused_and_changes_nothing(
    client: TestClient, fake_slack: FakeSlack, secret: str | None
) -> None:
    run = running_deploy()
    status, body = call(client, run.id, secret)
    assert status == 401
    assert SECRET not in str(body)
    assert state_of(run.id) == "Running"
    assert fake_slack.top_level(DEPLOYS) == []


def test_an_unset_secret_refuses_every_call(prefect_server: None) -> None:
    with gateway(settings=replace(SETTINGS, silent_runs_secret="")) as unset:
        assert call(unset, uuid.uuid4(), "")[0] == 401
        assert call(unset, uuid.uuid4(), "anything")[0] == 401


def test_a_silent_running_deploy_is_crashed_and_reported_once(
    client: TestClient, fake_slack: FakeSlack
) -> None:
    run = running_deploy()
    status, body = call(client, run.id)
    assert (status, body["outcome"]) == (200, "reported")
    with get_client(sync_client=True) as prefect:
        after = prefect.read_flow_run(run.id)
    assert after.state_name == "Crashed"
    assert "no heartbeat for 60 s" in (after.state.message or "")
    assert REPORTED_LABEL in after.labels
    told = [m.text for m in fake_slack.top_level(DEPLOYS)]
    assert len(told) == 1 and "crashed" in told[0] and str(run.id) in told[0], told

    # The automation may call again (both actions, a retry); nobody is told twice.
    status, body = call(client, run.id)
    assert (status, body["outcome"]) == (200, "reported already")
    assert len(fake_slack.top_level(DEPLOYS)) == 1


def test_a_run_that_ended_by_itself_is_left_alone(
    client: TestClient, fake_slack: FakeSlack
) -> None:
    run = running_deploy()
    with get_client(sync_client=True) as prefect:
        prefect.set_flow_run_state(run.id, Completed(), force=True)
    status, body = call(client, run.id)
    assert (status, body["outcome"]) == (200, "finished")
    assert state_of(run.id) == "Completed"
    assert fake_slack.top_level(DEPLOYS) == []


def test_a_run_that_sent_a_heartbeat_lately_is_left_alone(
    client: TestClient, fake_slack: FakeSlack
) -> None:
    """Only the automation knows the secret; still, a call about a live run changes nothing."""
    run = running_deploy()
    emit_event(heartbeat.EVENT, resource={"prefect.resource.id": f"prefect.flow-run.{run.id}"})
    assert heartbeats_of(run.id, at_least=1), "the heartbeat never reached the server"
    status, body = call(client, run.id)
    assert (status, body["outcome"]) == (200, "alive")
    assert state_of(run.id) == "Running"
    assert fake_slack.top_level(DEPLOYS) == []


@flow(name="something-else")
def something_else() -> None:
    pass


def heartbeats_of(run_id: uuid.UUID, at_least: int) -> list:
    """The heartbeat events the server stored for the run, once it has ``at_least`` of them
    (it stores events in batches)."""
    beats = EventFilter(
        event=EventNameFilter(name=[heartbeat.EVENT]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as prefect:
        while True:
            events = prefect.read_events(filter=beats, limit=50).events
            if len(events) >= at_least or time.monotonic() > deadline:
                return events
            time.sleep(0.5)


def test_a_run_sends_heartbeats_naming_it_and_its_flow_until_it_ends(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the automation matches on: the run as the resource, its flow as a related one."""
    monkeypatch.setenv("CHATOPS_HEARTBEAT_SECONDS", "0.2")

    @flow(name="something-beating")
    def beating() -> uuid.UUID:
        with heartbeat.beating():
            time.sleep(1.5)
        return flow_run.id

    run_id = beating()
    with get_client(sync_client=True) as prefect:
        flow_id = prefect.read_flow_run(run_id).flow_id
    events = heartbeats_of(run_id, at_least=3)
    assert len(events) >= 3, events
    for event in events:
        assert event.resource.id == f"prefect.flow-run.{run_id}"
        flows = {(r.id, r.name) for r in event.related if r.role == "flow"}
        assert flows == {(f"prefect.flow.{flow_id}", "something-beating")}, event.related
    time.sleep(1.5)  # longer than four heartbeats and the server's storing of events
    with get_client(sync_client=True) as prefect:
        ended = prefect.read_flow_run(run_id).end_time
    assert max(e.occurred for e in heartbeats_of(run_id, at_least=len(events))) < ended


def test_outside_a_flow_run_nothing_beats() -> None:
    with heartbeat.beating():
        assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat")]


def test_unknown_runs_and_runs_of_other_flows_are_not_touched(client: TestClient) -> None:
    assert call(client, uuid.uuid4())[0] == 404
    with get_client(sync_client=True) as prefect:
        other = prefect.create_flow_run(something_else, state=Running())
    assert call(client, other.id)[0] == 404
    assert state_of(other.id) == "Running"
    bad = client.post(SILENT_RUNS_PATH, content=b"{}", headers={SILENT_RUNS_HEADER: SECRET})
    assert bad.status_code == 400


def test_the_automation_watches_deploys_and_rollbacks_for_two_heartbeats(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created by name, then updated in place (``chatops up`` runs it at every start)."""
    from chatops.dead_runs import watch_silent_runs

    monkeypatch.setenv("CHATOPS_HEARTBEAT_SECONDS", "45")
    first = watch_silent_runs("http://127.0.0.1:9", secret=SECRET)
    again = watch_silent_runs("http://127.0.0.1:8000/", secret=SECRET)
    assert first.id == again.id
    from prefect.automations import Automation

    stored = Automation.read(name=AUTOMATION)
    assert stored.trigger.within.total_seconds() == 90
    assert stored.trigger == silent_run_trigger(90)
    assert [a.type for a in stored.actions] == ["change-flow-run-state", "call-webhook"]
    os.environ.pop("CHATOPS_HEARTBEAT_SECONDS", None)


def test_watch_waits_for_the_api_and_gives_up_saying_so(prefect_server: None) -> None:
    wait_for_the_api(5)  # the test server answers: at once
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="did not answer within 1 s"):
            wait_for_the_api(1)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("setting", ["0", "-5", "soon", "nan"])
def test_a_heartbeat_setting_that_is_no_period_is_refused_naming_it(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATOPS_HEARTBEAT_SECONDS", setting)
    with pytest.raises(ValueError, match=f"CHATOPS_HEARTBEAT_SECONDS must be .* not '{setting}'"):
        heartbeat.heartbeat_seconds()
