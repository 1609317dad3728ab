"""Runs the gateway started: what it asked for, signed, so a flow can tell them from copies.

The gateway signs the parameters it starts a deploy or rollback with, together with the run's
Prefect idempotency key (its request key), using HMAC-SHA256 over canonical JSON and a key only
the gateway and the flows hold. The flow checks the signature before anything else, and also
that the signed request key is its own run's idempotency key: a run started in the Prefect UI
(or straight through the API) has no valid signature, and a copy of a signed run's parameters
has another key (or none). Such a run is anonymous, a "UI run" (see :mod:`flows.target`)::

    >>> key = "k" * 64
    >>> asked = claims("deploy", {"app": "shop", "environment": "staging", "ref": "main",
    ...                           "requested_by": "U1", "via": "slack", "force": True}, "slack-T1")
    >>> signature = sign(asked, key)
    >>> signature.startswith("v1=")
    True
    >>> print(problem(asked, signature, key))
    None
    >>> print(problem({**asked, "requested_by": "U2"}, signature, key))
    the signature does not match the parameters (changed after the gateway signed them)
    >>> print(problem({**asked, "key": None}, sign({**asked, "key": None}, key), key))
    the run has no request key
    >>> print(problem(asked, "", key))
    the run has no signature

The key is ``CHATOPS_RUN_SIGNING_KEY`` or, on one machine, ``$CHATOPS_HOME/secrets/run-signing-key``
(made on first use): every gateway and every machine that runs flows must hold the same one.
"""

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from adapters.home import home

KEY_ENV = "CHATOPS_RUN_SIGNING_KEY"
SECRET_NAME = "run-signing-key"
VERSION = "v1="
SIGNED = (
    "flow",
    "app",
    "environment",
    "ref",
    "sha",
    "deployment_id",
    "requested_by",
    "via",
    "force",
    "hosts",
    "task",
    "channel",
    "pull_request",
    "key",
)
"""What a signature covers: the flow, what it acts on, who asked how, and the request key."""


def signing_key(create: bool = True) -> str:
    """The key runs are signed with: ``CHATOPS_RUN_SIGNING_KEY``, else the one in
    ``$CHATOPS_HOME/secrets`` (made on first use when ``create``)."""
    return os.environ.get(KEY_ENV, "").strip() or home().secret(SECRET_NAME, create=create)


def claims(flow: str, parameters: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """What a run of ``flow`` with ``parameters`` and request ``key`` claims, as signed.

    Missing parameters count as the flows' defaults (``None``; ``requested_by``: ``""``,
    ``via``: ``"ui"``, ``force``: false, ``task``: ``"deploy"``), so the gateway's parameters
    and the flow's arguments give the same claims.
    """
    notify = parameters.get("notify")
    channel = notify.get("channel") if isinstance(notify, Mapping) else None
    channel = getattr(notify, "channel", channel)
    values = {
        **{name: parameters.get(name) for name in SIGNED},
        "flow": flow,
        "requested_by": parameters.get("requested_by") or "",
        "via": parameters.get("via") or "ui",
        "force": bool(parameters.get("force")),
        "task": parameters.get("task") or "deploy",
        "channel": channel,
        "pull_request": _comment_claim(parameters.get("pull_request")),
        "key": key,
    }
    return values


def _comment_claim(pull_request: Any) -> list[Any] | None:
    """Which pull request comment a run keeps up to date, the same whether the parameter is
    the gateway's dict or the flow's dataclass: ``[repository, number, comment_id]``."""
    if pull_request is None:
        return None
    read = (
        pull_request.get
        if isinstance(pull_request, Mapping)
        else (lambda name: getattr(pull_request, name, None))
    )
    return [read("repository"), read("number"), read("comment_id")]


def canonical(values: Mapping[str, Any]) -> bytes:
    """The signed bytes: the :data:`SIGNED` values as compact JSON with sorted keys.

    >>> canonical({"via": "cli", "app": "shop"})[:40]
    b'{"app":"shop","channel":null,"deployment'
    """
    wanted = {name: values.get(name) for name in SIGNED}
    return json.dumps(wanted, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(values: Mapping[str, Any], key: str) -> str:
    """The signature of ``values`` (from :func:`claims`) with ``key``."""
    if not key:
        raise ValueError("no run signing key")
    digest = hmac.new(key.encode(), canonical(values), hashlib.sha256).hexdigest()
    return VERSION + digest


def problem(values: Mapping[str, Any], signature: str | None, key: str) -> str | None:
    """Why ``signature`` does not vouch for ``values``, or None when it does."""
    if not signature:
        return "the run has no signature"
    if not key:
        return "this machine has no run signing key (CHATOPS_RUN_SIGNING_KEY)"
    if not values.get("key"):
        return "the run has no request key"
    if not hmac.compare_digest(signature.encode(), sign(values, key).encode()):
        return "the signature does not match the parameters (changed after the gateway signed them)"
    return None
