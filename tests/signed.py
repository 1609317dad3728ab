"""Runs as the gateway starts them: signed parameters and the request key as idempotency key.

Tests that call a flow with a requester (``requested_by``, ``via``, ``force``) run it through
:func:`as_gateway`: in this process, like a direct call, but on a flow run created the way the
gateway's intake creates one, so the flow believes what it is told. A direct call is a UI run.
"""

import uuid
from typing import Any

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import FlowCreate, FlowRunCreate
from prefect.client.schemas.objects import Flow as FlowModel
from prefect.client.schemas.objects import FlowRun
from prefect.flow_engine import run_flow
from prefect.states import Pending, to_state_create

from chatops.request import signed


def signed_parameters(flow_name: str, parameters: dict[str, Any], key: str) -> dict[str, Any]:
    """``parameters`` with the signature the gateway would give them for request ``key``."""
    return signed(flow_name, parameters, key)


def create_keyed_run(flow: Flow, parameters: dict[str, Any], key: str | None) -> FlowRun:
    """A flow run of ``flow`` (no deployment) with Prefect idempotency key ``key``."""
    with get_client(sync_client=True) as client:
        response = client.request(
            "POST", "/flows/", json=FlowCreate(name=flow.name).model_dump(mode="json")
        )
        flow_id = FlowModel.model_validate(response.json()).id
        create = FlowRunCreate(
            flow_id=flow_id,
            parameters=parameters,
            state=to_state_create(Pending()),
            idempotency_key=key,
        )
        response = client.request(
            "POST", "/flow_runs/", json=create.model_dump(mode="json", exclude_unset=True)
        )
    return FlowRun.model_validate(response.json())


def as_gateway(flow: Flow, return_state: bool = False, **parameters: Any) -> Any:
    """Run ``flow`` here with ``parameters`` signed as the gateway signs a request; its result
    (or its final state with ``return_state``), as a direct call returns them."""
    key = f"test-{uuid.uuid4()}"
    parameters = signed_parameters(flow.name, parameters, key)
    flow_run = create_keyed_run(flow, parameters, key)
    return run_flow(
        flow,
        flow_run=flow_run,
        parameters=parameters,
        return_type="state" if return_state else "result",
    )
