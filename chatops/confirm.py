"""Confirmation where it matters: a deploy to an environment with ``confirm: true`` waits for
its requester's "Deploy" in Slack (or y / ``--yes`` in the terminal).

The Slack question carries the request in its buttons' value, signed (HMAC-SHA256 with the
run signing key every gateway has, :mod:`adapters.run_signing`) and valid for
:data:`VALID_SECONDS`, so any gateway can read a click and nobody can make up or change one::

    value = ask_value(request, now)       # the buttons' value: the request, its key, signed
    asked = read_value(value, now)        # the request again, or Unconfirmable (why not)

"Deploy" submits the request with its own key, so two clicks start one run; "Cancel" spends
that key in the intake (:meth:`chatops.intake.Intake.withdraw`), so a "Deploy" after it starts
nothing. Only the requester's click counts.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from adapters.run_signing import signing_key
from chatops.grammar import Command, CommandError, validate_name, validate_ref
from chatops.request import Request, Requester
from chatops.slack.form import CANCEL, DEPLOY, SLACK_ID
from model.errors import ChatopsError
from render.slack_card import SECTION_LIMIT, clip

VALID_SECONDS = 15 * 60
"""How long a question may be answered: what it shows (the plan) goes stale."""
_DOMAIN = b"chatops-confirm-v1\n"
"""Sets these signatures apart from the runs' signatures made with the same key."""


class Unconfirmable(ChatopsError):
    """A click that cannot confirm anything (forged, changed, expired); the message says so."""


def ask_value(request: Request, now: float | None = None) -> str:
    """The signed value of the "Deploy" and "Cancel" buttons for ``request`` (a deploy from
    Slack); the request key it carries is the run's."""
    command, requester = request.command, request.requester
    data = {
        "app": command.app,
        "ref": command.ref,
        "environment": command.environment,
        "hosts": command.hosts,
        "task": command.task,
        "force": command.force,
        "user": requester.user,
        "channel": requester.channel,
        "key": request.key or f"confirm-{uuid.uuid4()}",
        "expires": int((time.time() if now is None else now) + VALID_SECONDS),
    }
    body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
    return f"{body}.{_mac(body)}"


def read_value(value: str | None, now: float | None = None) -> Request:
    """The request a button's ``value`` stands for; :class:`Unconfirmable` if its signature is
    wrong or it expired."""
    body, _, mac = (value or "").partition(".")
    key = signing_key(create=False)
    if not key or not hmac.compare_digest(mac.encode(), _mac(body, key).encode()):
        raise Unconfirmable("This button's data is not valid (not signed by chatops).")
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
    except (ValueError, binascii.Error):
        raise Unconfirmable("This button's data is not valid.") from None
    if (time.time() if now is None else now) > data["expires"]:
        minutes = VALID_SECONDS // 60
        raise Unconfirmable(
            f"This question expired (it is answered within {minutes} minutes, while what it "
            "shows is current). Ask again."
        )
    return Request(Requester("slack", data["user"], data["channel"]), _command(data), data["key"])


def _command(data: dict[str, Any]) -> Command:
    """The deploy command of a signed value, validated like typed text all the same."""
    try:
        if not SLACK_ID.fullmatch(str(data["user"])):
            raise CommandError("not a Slack user")
        return Command(
            "deploy",
            validate_name("app", data["app"]),
            ref=validate_ref(data["ref"]) if data.get("ref") else None,
            environment=validate_name("environment", data["environment"])
            if data.get("environment")
            else None,
            hosts=[validate_name("host", h) for h in data["hosts"]] if data.get("hosts") else None,
            task=validate_name("task", data.get("task") or "deploy"),
            force=bool(data.get("force")),
        )
    except (CommandError, KeyError, TypeError) as exc:
        raise Unconfirmable(f"This button's data is not valid: {exc}") from None


def _mac(body: str, key: str | None = None) -> str:
    key = key if key is not None else signing_key()
    return hmac.new(key.encode(), _DOMAIN + body.encode(), hashlib.sha256).hexdigest()


def question_blocks(text: str, value: str) -> list[dict[str, Any]]:
    """The question as Block Kit: ``text`` (the plan), then "Deploy" and "Cancel"."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": DEPLOY,
                    "text": {"type": "plain_text", "text": "Deploy"},
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": CANCEL,
                    "text": {"type": "plain_text", "text": "Cancel"},
                    "value": value,
                },
            ],
        },
    ]
