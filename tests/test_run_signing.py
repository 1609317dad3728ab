"""Signed runs: what the gateway signs, what breaks a signature, and who may start UI runs."""

import pytest

from adapters.run_signing import claims, problem, sign
from blocks import Environment

KEY = "k" * 64
ASKED = {
    "app": "shop",
    "environment": "production",
    "ref": "main",
    "sha": "a" * 40,
    "deployment_id": 42,
    "requested_by": "U0ALICE001",
    "via": "slack",
    "force": False,
    "hosts": ["web-1"],
    "task": "deploy",
    "notify": {"channel": "C0DEPLOYS1"},
}


def signature(parameters: dict = ASKED, key: str = "slack-T1") -> str:
    return sign(claims("deploy", parameters, key), KEY)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("app", "billing"),
        ("environment", "staging"),
        ("ref", "evil"),
        ("sha", "b" * 40),
        ("deployment_id", 43),
        ("requested_by", "U0MALLORY1"),
        ("via", "cli"),
        ("force", True),
        ("hosts", None),
        ("task", "migrate"),
        ("notify", {"channel": "C0ELSEWHERE"}),
    ],
)
def test_changing_any_signed_parameter_breaks_the_signature(name: str, value: object) -> None:
    changed = {**ASKED, name: value}
    assert problem(claims("deploy", ASKED, "slack-T1"), signature(), KEY) is None
    why = problem(claims("deploy", changed, "slack-T1"), signature(), KEY)
    assert why and "does not match" in why


def test_another_request_key_another_flow_or_another_key_breaks_it() -> None:
    assert "does not match" in problem(claims("deploy", ASKED, "slack-T2"), signature(), KEY)
    assert "does not match" in problem(claims("rollback", ASKED, "slack-T1"), signature(), KEY)
    other = sign(claims("deploy", ASKED, "slack-T1"), "x" * 64)
    assert "does not match" in problem(claims("deploy", ASKED, "slack-T1"), other, KEY)
    assert "no run signing key" in problem(claims("deploy", ASKED, "slack-T1"), signature(), "")


def test_the_flows_defaults_sign_like_parameters_left_out() -> None:
    sparse = {"app": "shop", "environment": "staging"}
    full = {
        **sparse,
        "ref": None,
        "sha": None,
        "deployment_id": None,
        "requested_by": "",
        "via": "ui",
        "force": False,
        "hosts": None,
        "task": "deploy",
        "notify": None,
    }
    assert claims("deploy", sparse, "k1") == claims("deploy", full, "k1")


def environment(**fields: object) -> Environment:
    return Environment(
        hosts=["web-1"],
        ssh_private_key="x",
        deploy_path="/srv/app",
        restart_command="true",
        **fields,
    )


@pytest.mark.parametrize(
    ("fields", "allowed"),
    [
        ({}, True),
        ({"production": True}, False),
        ({"allowed_users": ["U1"]}, False),
        ({"cli_users": ["alice"]}, False),
        ({"allowed_channels": ["C1"]}, True),
        ({"production": True, "allow_ui_runs": True}, True),
        ({"allow_ui_runs": False}, False),
    ],
)
def test_ui_runs_are_allowed_by_default_only_where_no_one_is_named(
    fields: dict, allowed: bool
) -> None:
    assert environment(**fields).ui_runs_allowed() is allowed
