"""Read a verified Slack request (slash command or button click) into a :class:`Request`.

The gateway has checked the signature already. Everything read here is validated (ids, URLs,
button values); anything malformed raises :class:`BadRequest` (HTTP 400) and starts nothing::

    form = read_form(body)
    request, reply_to = slash_command(form)     # /deploy shop to staging
    request, reply_to = block_action(form)      # "Roll back" / "Deploy anyway" / "Abort"
    click = block_action(form)                  # "Deploy" / "Cancel": a Confirmation

A slash command's text is parsed by :func:`chatops.grammar.parse`; a text (or a button value)
that does not parse is answered with the error (:class:`Unparsed`). A button's value carries the
app and environment (and, for "Deploy anyway", the deploy's parameters) and is validated with
the same rules as typed text.
"""

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from chatops.grammar import Command, CommandError, parse, validate_name, validate_ref
from chatops.intake import ReplyTo
from chatops.request import Request, Requester
from model.errors import ChatopsError

SLACK_ID = re.compile(r"[A-Z0-9]{2,40}")
"""User, channel and team ids as Slack writes them (``U024BE7LH``, ``C2147483705``)."""
MAX_FIELDS = 64
_URL = re.compile(r"https?://[^\s<>|]{1,2000}")
_TRIGGER = re.compile(r"[A-Za-z0-9._-]{1,200}")


DEPLOY, CANCEL = "confirm_deploy", "cancel_deploy"
"""The ``action_id`` of the buttons that answer a confirmation question (:mod:`chatops.confirm`)."""


@dataclass(frozen=True)
class Confirmation:
    """A click on "Deploy" (``deploy``) or "Cancel" under a confirmation question: who clicked,
    the button's (signed) value, where to answer."""

    clicker: Requester
    deploy: bool
    value: str | None
    reply_to: ReplyTo


class BadRequest(ChatopsError):
    """The request is malformed (HTTP 400); the message is safe to return."""


@dataclass(frozen=True)
class Unparsed:
    """A slash command whose text is not a command: the answer is the parse error."""

    error: str
    reply_to: ReplyTo


def read_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value of each field)."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the body is not a valid url-encoded form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def slash_command(form: dict[str, str]) -> tuple[Request, ReplyTo] | Unparsed:
    """The request a slash command makes (the deprecated ``token`` field is ignored)."""
    if "text" not in form:
        raise BadRequest("the form has no text field")
    requester, reply_to, key = _who(
        form.get("user_id"),
        form.get("channel_id"),
        form.get("response_url"),
        form.get("trigger_id"),
    )
    try:
        command = parse(form["text"])
    except CommandError as exc:
        return Unparsed(str(exc), reply_to)
    return Request(requester, command, key=key), reply_to


def block_action(
    form: dict[str, str],
) -> tuple[Request, ReplyTo] | Confirmation | Unparsed | None:
    """The request a button click makes, or the answer to a confirmation question; None for
    clicks that ask for nothing (View run)."""
    try:
        payload = json.loads(form["payload"])
    except (KeyError, ValueError, RecursionError):
        raise BadRequest("the form has no valid JSON payload field") from None
    if not isinstance(payload, dict):
        raise BadRequest("the payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise BadRequest("block_actions without actions")
    action_id, value = actions[0].get("action_id"), actions[0].get("value")
    if not isinstance(action_id, str) or not (value is None or isinstance(value, str)):
        raise BadRequest("the action has no action_id")
    channel = _dict(payload.get("channel")).get("id") or _dict(payload.get("container")).get(
        "channel_id"
    )
    requester, reply_to, key = _who(
        _dict(payload.get("user")).get("id"),
        channel,
        payload.get("response_url"),
        payload.get("trigger_id"),
    )
    if action_id in (DEPLOY, CANCEL):
        return Confirmation(requester, action_id == DEPLOY, value, reply_to)
    if action_id not in ("rollback", "deploy_anyway", "abort"):
        return None
    try:
        command = button_command(action_id, value)
    except CommandError as exc:
        return Unparsed(f"This button's data is not valid: {exc}", reply_to)
    # "Deploy anyway" has its own confirm dialog ("Skip the checks?"): it is not asked again.
    return Request(requester, command, key=key, confirmed=action_id == "deploy_anyway"), reply_to


def button_command(action_id: str, value: str | None) -> Command:
    """The command a "Roll back", "Deploy anyway" or "Abort" button stands for, validated like
    text."""
    try:
        data = json.loads(value or "")
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise CommandError("it is not a JSON object")
    app = validate_name("app", data.get("app"))
    environment = validate_name("environment", data.get("environment"))
    if action_id in ("rollback", "abort"):
        return Command(action_id, app, environment=environment)
    hosts = data.get("hosts")
    if hosts is not None and not isinstance(hosts, list):
        raise CommandError("its hosts are not a list")
    return Command(
        "deploy",
        app,
        ref=validate_ref(data["ref"]) if data.get("ref") else None,
        environment=environment,
        hosts=[validate_name("host", h) for h in hosts] if hosts else None,
        task=validate_name("task", data.get("task") or "deploy"),
        force=True,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _who(
    user_id: Any, channel_id: Any, response_url: Any, trigger_id: Any
) -> tuple[Requester, ReplyTo, str | None]:
    if not isinstance(user_id, str) or not SLACK_ID.fullmatch(user_id):
        raise BadRequest("missing or malformed user_id")
    if not isinstance(channel_id, str) or not SLACK_ID.fullmatch(channel_id):
        raise BadRequest("missing or malformed channel_id")
    if not isinstance(response_url, str) or not _URL.fullmatch(response_url):
        raise BadRequest("missing or malformed response_url")
    trigger = trigger_id if isinstance(trigger_id, str) and _TRIGGER.fullmatch(trigger_id) else None
    requester = Requester("slack", user_id, channel_id)
    reply_to = ReplyTo(response_url=response_url, mention=requester.mention)
    # One run per Slack interaction: Slack gives each one a fresh trigger_id.
    return requester, reply_to, f"slack-{trigger}" if trigger else None
