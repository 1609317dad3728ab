"""A fake Slack Web API on 127.0.0.1, plus a fake ``response_url`` receiver.

It answers the way Slack does, checked against the copies of Slack's own material in
``shared/fixtures/slack/``: the Web API OpenAPI subset (chat.postMessage, chat.update,
chat.postEphemeral, auth.test) and its example responses. Errors are HTTP 200
``{"ok": false, "error": ...}`` with error strings from the spec's enums; rate limits are HTTP 429
with ``Retry-After``.

Use it through the ``fake_slack`` fixture (function scope)::

    def test_posts(fake_slack):
        client = WebClient(token=fake_slack.token, base_url=fake_slack.api_url)
        ts = client.chat_postMessage(channel="C0DEPLOYS1", text="hi")["ts"]
        assert fake_slack.messages[("C0DEPLOYS1", ts)].text == "hi"
        assert fake_slack.violations == []

What the fake checks on every exchange, recording problems in ``fake.violations``:

* every response body validates against the spec's ``200`` (ok true) or ``default`` (ok false)
  schema, so the fake cannot drift away from Slack's documented shapes;
* every Block Kit payload keeps Slack's limits (≤50 blocks, header ≤150, section text ≤3000,
  ≤10 fields, button style primary/danger, ...) and round-trips through slack_sdk's models;
  Slack answers such payloads with ``invalid_blocks`` and so does the fake;
* arguments are ones the spec lists for the method (Slack silently ignores misspelled ones).

Inspection: ``fake.messages`` ((channel, ts) -> ``FakeMessage`` with ``history``), ``fake.calls``
(``Call(method, json, status, response)``), ``fake.ephemerals``, ``fake.responses(name)``.
Fault injection: ``fake.fail_next(method, error=..., status=..., retry_after=..., times=...)``,
``fake.delay(seconds)``. Limit the accepted channels with ``fake.channels = {"C0DEPLOYS1"}``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

from tests.fakes import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES / "slack"
SPEC_PATH = FIXTURES / "slack_web_openapi_chat_subset.json"

#: Error strings Slack documents today that the 2021 spec's enums lack. Error bodies may use them
#: without being flagged; anything else outside the enums is a violation.
ERRORS_NEWER_THAN_SPEC = ("ratelimited", "invalid_blocks", "invalid_blocks_format", "invalid_json")
#: Arguments Slack accepts today that the 2021 spec does not list.
ARGS_NEWER_THAN_SPEC = frozenset({"metadata", "markdown_text"})

MAX_TEXT = 40_000  # chat.* answer msg_too_long above this many characters of ``text``
MAX_RESPONSE_URL_USES = 5  # Slack: a response_url may be used up to five times
VALID_TOKEN = "xoxb-0000000000-0000000000000-fakeslackbottoken"
BOT = {"bot_id": "B0FAKEBOT01", "user": "U0FAKEBOT01", "team": "T0FAKETEAM1"}
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")


# --------------------------------------------------------------------------- spec
def _load_spec() -> dict[str, Any]:
    """The spec, with one correction so that its own chat.postMessage example validates.

    ``objs_message.attachments`` items forbid extra keys, yet the spec's example (and every real
    attachment) carries ``text``. The fake never echoes attachments; this keeps the example honest.
    """
    spec = json.loads(SPEC_PATH.read_text())
    attachment = spec["definitions"]["objs_message"]["properties"]["attachments"]["items"]
    attachment["additionalProperties"] = True
    return spec


SPEC = _load_spec()
METHODS = tuple(path.lstrip("/") for path in SPEC["paths"])


def _operation(method: str) -> dict[str, Any]:
    return next(iter(SPEC["paths"]["/" + method].values()))


def _validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """A validator for one response schema; its ``#/definitions/...`` refs resolve in the spec."""
    return jsonschema.Draft4Validator({**schema, "definitions": SPEC["definitions"]})


def _error_schema(method: str) -> dict[str, Any]:
    schema = copy.deepcopy(_operation(method)["responses"]["default"]["schema"])
    schema["properties"]["error"]["enum"] += list(ERRORS_NEWER_THAN_SPEC)
    return schema


SUCCESS_VALIDATORS = {m: _validator(_operation(m)["responses"]["200"]["schema"]) for m in METHODS}
ERROR_VALIDATORS = {m: _validator(_error_schema(m)) for m in METHODS}
KNOWN_ARGS = {
    m: {p["name"] for p in _operation(m)["parameters"] if p["in"] == "formData"}
    | ARGS_NEWER_THAN_SPEC
    | {"token"}
    for m in METHODS
}


def spec_errors(method: str) -> list[str]:
    """The legal ``error`` strings of ``method`` per the spec (without the newer additions)."""
    return list(_operation(method)["responses"]["default"]["schema"]["properties"]["error"]["enum"])


def response_problems(method: str, body: Any) -> list[str]:
    """Why ``body`` is not a response Slack's spec allows for ``method`` (empty list: it is)."""
    if method not in SUCCESS_VALIDATORS:
        return []
    if not isinstance(body, dict):
        return [f"{method}: response body is not a JSON object"]
    validators = SUCCESS_VALIDATORS if body.get("ok") is True else ERROR_VALIDATORS
    errors = sorted(validators[method].iter_errors(body), key=lambda e: list(e.path))
    return [
        f"{method} response: {'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
    ]


# --------------------------------------------------------------------------- Block Kit
BLOCK_TYPES = frozenset({"section", "header", "divider", "actions", "context"})
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
BUTTON_STYLES = frozenset({"primary", "danger"})


def _text_problems(obj: Any, where: str, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in TEXT_TYPES:
        return [f"{where}: not a text object"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: text must be a non-empty string"]
    return [f"{where}: {len(text)} characters > {limit}"] if len(text) > limit else []


def _confirm_problems(confirm: Any, where: str) -> list[str]:
    if not isinstance(confirm, dict):
        return [f"{where}: confirm must be an object"]
    problems = _text_problems(confirm.get("title"), f"{where}.title", 100, plain_only=True)
    problems += _text_problems(confirm.get("text"), f"{where}.text", 300)
    problems += _text_problems(confirm.get("confirm"), f"{where}.confirm", 30, plain_only=True)
    problems += _text_problems(confirm.get("deny"), f"{where}.deny", 30, plain_only=True)
    if "style" in confirm and confirm["style"] not in BUTTON_STYLES:
        problems.append(f"{where}.style: {confirm['style']!r} not primary/danger")
    return problems


def _button_problems(button: Any, where: str) -> list[str]:
    if not isinstance(button, dict) or button.get("type") != "button":
        return [f"{where}: only button elements are modelled"]
    problems = _text_problems(button.get("text"), f"{where}.text", 75, plain_only=True)
    for key, limit in (("action_id", 255), ("value", 2000), ("url", 3000)):
        if key in button and (not isinstance(button[key], str) or len(button[key]) > limit):
            problems.append(f"{where}.{key}: must be a string of ≤{limit} characters")
    if "style" in button and button["style"] not in BUTTON_STYLES:
        problems.append(f"{where}.style: {button['style']!r} not primary/danger")
    if "confirm" in button:
        problems += _confirm_problems(button["confirm"], f"{where}.confirm")
    return problems


def _section_problems(block: dict[str, Any], where: str) -> list[str]:
    if "text" not in block and "fields" not in block:
        return [f"{where}: section needs text or fields"]
    problems = _text_problems(block["text"], f"{where}.text", 3000) if "text" in block else []
    fields = block.get("fields", [])
    if not isinstance(fields, list) or len(fields) > 10:
        problems.append(f"{where}.fields: at most 10 fields")
        fields = []
    for i, item in enumerate(fields):
        problems += _text_problems(item, f"{where}.fields[{i}]", 2000)
    if "accessory" in block:
        problems += _button_problems(block["accessory"], f"{where}.accessory")
    return problems


def _elements_problems(block: dict[str, Any], where: str) -> list[str]:
    elements = block.get("elements")
    limit = 25 if block["type"] == "actions" else 10
    if not isinstance(elements, list) or not 1 <= len(elements) <= limit:
        return [f"{where}.elements: 1..{limit} elements required"]
    if block["type"] == "context":
        return [p for i, e in enumerate(elements) for p in _text_problems(e, f"{where}[{i}]", 3000)]
    problems = [p for i, e in enumerate(elements) for p in _button_problems(e, f"{where}[{i}]")]
    action_ids = [e.get("action_id") for e in elements if isinstance(e, dict) and "action_id" in e]
    if len(action_ids) != len(set(action_ids)):
        problems.append(f"{where}: duplicate action_id in one block")
    return problems


def _block_problems(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        kind = block.get("type") if isinstance(block, dict) else type(block).__name__
        return [f"{where}: block type {kind!r} is not one this project uses"]
    if len(str(block.get("block_id", ""))) > 255:
        return [f"{where}.block_id: longer than 255 characters"]
    kind = block["type"]
    if kind == "header":
        return _text_problems(block.get("text"), f"{where}.text", 150, plain_only=True)
    if kind == "section":
        return _section_problems(block, where)
    if kind in ("actions", "context"):
        return _elements_problems(block, where)
    return []


def _round_trip_problem(block: dict[str, Any], where: str) -> list[str]:
    """slack_sdk's models drop unknown keys and enforce limits: a block must survive them."""
    try:
        parsed = Block.parse(block)
        same = parsed is not None and parsed.to_dict() == block
    except SlackObjectFormationError as exc:
        return [f"{where}: slack_sdk rejects it: {exc}"]
    return [] if same else [f"{where}: does not round-trip through slack_sdk (unknown keys?)"]


def block_kit_problems(blocks: Any) -> list[str]:
    """Why Slack would answer ``invalid_blocks`` for ``blocks`` (empty list: it would not)."""
    if not isinstance(blocks, list):
        return ["blocks: must be a JSON array"]
    problems = [f"blocks: {len(blocks)} blocks > 50"] if len(blocks) > 50 else []
    for i, block in enumerate(blocks):
        found = _block_problems(block, f"blocks[{i}]")
        problems += found or _round_trip_problem(block, f"blocks[{i}]")
    block_ids = [b["block_id"] for b in blocks if isinstance(b, dict) and "block_id" in b]
    if len(block_ids) != len(set(block_ids)):
        problems.append("blocks: duplicate block_id")
    return problems


# --------------------------------------------------------------------------- state
@dataclass
class MessageVersion:
    """One version of a message: what was posted, or what an update replaced it with."""

    text: str
    blocks: list[dict[str, Any]] | None


@dataclass
class FakeMessage:
    """A message in the fake workspace. ``history[0]`` is the post, then one entry per update."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    history: list[MessageVersion] = field(default_factory=list)

    @property
    def updates(self) -> int:
        """How many times chat.update changed this message."""
        return len(self.history) - 1


@dataclass
class Call:
    """One Web API request: ``json`` holds the arguments (form bodies decoded, blocks parsed)."""

    method: str
    json: dict[str, Any]
    status: int = 0
    response: Any = None


@dataclass
class _Fault:
    method: str
    times: int
    status: int
    body: Any
    headers: dict[str, str]


class ApiError(Exception):
    """Raised inside a method handler to answer HTTP 200 ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class FakeSlack:
    """The fake workspace and its HTTP server. Prefer the ``fake_slack`` fixture.

    Attributes tests read or set:
        url: ``http://127.0.0.1:<port>``; ``api_url`` is ``url + "/api/"`` (WebClient base_url).
        token: the one bot token accepted (``Authorization: Bearer <token>``).
        channels: ``None`` accepts any channel; a set of IDs and/or ``#names`` limits them
            (anything else answers ``channel_not_found``).
        messages: ``{(channel_id, ts): FakeMessage}``; ephemerals: list of dicts.
        calls: every Web API request, in order, including injected failures.
        violations: everything found off-spec; a healthy test leaves it empty.
    """

    def __init__(self) -> None:
        self.token = VALID_TOKEN
        self.channels: set[str] | None = None
        self.messages: dict[tuple[str, str], FakeMessage] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self._responses: dict[str, list[dict[str, Any]]] = {}
        self._faults: list[_Fault] = []
        self._delay = 0.0
        self._delay_times: int | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._seq = 0
        self._epoch = int(time.time())
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = self.url + "/api/"

    # ---- lifecycle
    def start(self) -> FakeSlack:
        """Serve in a background thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, waking any delayed request, and close the socket."""
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- inspection
    def message(self, ts: str) -> FakeMessage:
        """The message with this ``ts`` in any channel (KeyError if none)."""
        for (_, message_ts), message in self.messages.items():
            if message_ts == ts:
                return message
        raise KeyError(ts)

    def top_level(self, channel: str | None = None) -> list[FakeMessage]:
        """Messages that are not thread replies, optionally in one channel, oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.thread_ts is None and (channel is None or m.channel == channel)
        ]

    def replies(self, channel: str, thread_ts: str) -> list[FakeMessage]:
        """Thread replies under ``thread_ts`` in ``channel``, oldest first."""
        return [
            m for m in self.messages.values() if (m.channel, m.thread_ts) == (channel, thread_ts)
        ]

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of one Web API method."""
        return [c for c in self.calls if c.method == method]

    def channel_id(self, channel: str) -> str:
        """The ID a channel argument refers to: IDs stay, ``#name``/``name`` get a stable C-ID."""
        if CHANNEL_ID.match(channel):
            return channel
        digest = hashlib.sha256(channel.lstrip("#").encode()).hexdigest().upper()
        return "C" + "".join(ch for ch in digest if ch.isalnum())[:10]

    # ---- response_url
    def response_url(self, name: str) -> str:
        """A response_url that records what is POSTed there; read it back with ``responses``."""
        with self._lock:
            self._responses.setdefault(name, [])
        return f"{self.url}/response/{urllib.parse.quote(name, safe='')}"

    def responses(self, name: str) -> list[dict[str, Any]]:
        """The JSON bodies accepted at ``response_url(name)``, in order."""
        with self._lock:
            return list(self._responses.get(name, []))

    # ---- fault injection
    def fail_next(
        self,
        method: str,
        error: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
        times: int = 1,
        body: Any = None,
    ) -> None:
        """Make the next ``times`` requests to ``method`` fail.

        ``method`` is a Web API method, ``"*"`` for any, or ``"response_url"``.
        * ``error="channel_not_found"`` → HTTP 200 ``{"ok": false, "error": ...}`` (Slack's way);
        * ``status=429`` or ``retry_after=N`` → HTTP 429, ``Retry-After: N`` (default 1),
          body ``{"ok": false, "error": "ratelimited"}``;
        * ``status=500``/``503``/... → that status with an HTML page, like Slack's front end;
        * ``body=`` → answer exactly this (dict → JSON); used to prove validation catches it.
        """
        if error is None and status is None and retry_after is None and body is None:
            raise ValueError("fail_next needs error=, status=, retry_after= or body=")
        if retry_after is not None and status is None:
            status = 429
        status = status or 200
        headers: dict[str, str] = {}
        if status == 429:
            headers["Retry-After"] = str(1 if retry_after is None else retry_after)
        if body is None:
            body = _fault_body(method, error, status)
        with self._lock:
            self._faults.append(_Fault(method, times, status, body, headers))

    def delay(self, seconds: float, times: int | None = None) -> None:
        """Hold every following request (or the next ``times``) ``seconds`` before answering."""
        with self._lock:
            self._delay, self._delay_times = seconds, times

    # ---- internals used by the handler
    def _take_delay(self) -> float:
        with self._lock:
            if not self._delay or self._delay_times == 0:
                return 0.0
            if self._delay_times is not None:
                self._delay_times -= 1
            return self._delay

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in (method, "*") and not (
                    fault.method == "*" and method == "response_url"
                ):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _next_ts(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{self._epoch + self._seq // 1_000_000:010d}.{self._seq % 1_000_000:06d}"

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)


def _fault_body(method: str, error: str | None, status: int) -> Any:
    if status == 429:
        return {"ok": False, "error": error or "ratelimited"}
    if status >= 500:
        return f"<html><body><h1>{status} Server Error</h1></body></html>"
    if method == "response_url":
        return error or "invalid_payload"
    return {"ok": False, "error": error}


# --------------------------------------------------------------------------- Web API methods
def _resolve_channel(fake: FakeSlack, channel: Any, names_allowed: bool) -> str:
    if not isinstance(channel, str) or not channel:
        raise ApiError("channel_not_found")
    if not CHANNEL_ID.match(channel) and not names_allowed:
        raise ApiError("channel_not_found")  # chat.update wants the ID, like Slack
    known = fake.channels
    name = channel.lstrip("#")
    if known is not None and not {channel, name, "#" + name} & known:
        raise ApiError("channel_not_found")
    return fake.channel_id(channel)


def _content(fake: FakeSlack, args: dict[str, Any]) -> MessageVersion:
    """The text/blocks of a write call, checked the way Slack checks them."""
    text, blocks = args.get("text"), args.get("blocks")
    if not text and not blocks and not args.get("attachments"):
        raise ApiError("no_text")
    if text is not None and not isinstance(text, str):
        text = str(text)
    if text and len(text) > MAX_TEXT:
        raise ApiError("msg_too_long")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            raise ApiError("invalid_blocks_format") from None
    if blocks is not None:
        problems = block_kit_problems(blocks)
        for problem in problems:
            fake._violation(f"Block Kit: {problem}")
        if problems:
            raise ApiError("invalid_blocks")
    return MessageVersion(text or "", blocks)


def _echo_blocks(blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Slack echoes blocks back with a generated ``block_id`` on blocks that had none."""
    if not blocks:
        return {}
    echoed = [dict(b) for b in blocks]
    for i, block in enumerate(echoed):
        block.setdefault("block_id", f"fk{i:03d}")
    return {"blocks": echoed}


def _post_message(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _resolve_channel(fake, args.get("channel"), names_allowed=True)
    content = _content(fake, args)
    ts, thread_ts = fake._next_ts(), args.get("thread_ts") or None
    message = FakeMessage(channel, ts, content.text, content.blocks, thread_ts, [content])
    with fake._lock:
        fake.messages[(channel, ts)] = message
    echo = {
        "type": "message",
        "text": content.text,
        "ts": ts,
        **BOT,
        **_echo_blocks(content.blocks),
    }
    if thread_ts:
        echo["thread_ts"] = thread_ts
    return {"ok": True, "channel": channel, "ts": ts, "message": echo}


def _update(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _resolve_channel(fake, args.get("channel"), names_allowed=False)
    message = fake.messages.get((channel, str(args.get("ts"))))
    if message is None:
        raise ApiError("message_not_found")
    content = _content(fake, args)
    with fake._lock:
        if "text" in args:
            message.text = content.text
        if "blocks" in args:
            message.blocks = content.blocks
        message.history.append(MessageVersion(message.text, message.blocks))
    # The spec types chat.update's message.blocks as an object, so blocks are not echoed here.
    return {
        "ok": True,
        "channel": channel,
        "ts": message.ts,
        "text": message.text,
        "message": {"text": message.text},
    }


def _post_ephemeral(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    channel = _resolve_channel(fake, args.get("channel"), names_allowed=True)
    if not args.get("user"):
        raise ApiError("user_not_in_channel")
    content = _content(fake, args)
    ts = fake._next_ts()
    with fake._lock:
        fake.ephemerals.append(
            {
                "channel": channel,
                "user": args["user"],
                "text": content.text,
                "blocks": content.blocks,
                "thread_ts": args.get("thread_ts"),
                "ts": ts,
            }
        )
    return {"ok": True, "message_ts": ts}


def _auth_test(fake: FakeSlack, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "url": "https://fake-workspace.slack.com/",
        "team": "Fake Workspace",
        "user": "chatops",
        "team_id": BOT["team"],
        "user_id": BOT["user"],
        "bot_id": BOT["bot_id"],
        "is_enterprise_install": False,
    }


HANDLERS = {
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "auth.test": _auth_test,
}


# --------------------------------------------------------------------------- HTTP
def _parse_args(content_type: str, raw: bytes, query: str) -> dict[str, Any]:
    """Decode a Web API request's arguments; raises ApiError the way Slack would."""
    args: dict[str, Any] = dict(urllib.parse.parse_qsl(query))
    kind = content_type.split(";")[0].strip().lower()
    if not raw:
        return args
    if not kind:
        raise ApiError("missing_post_type")
    if kind == "application/json":
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ApiError("invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError("json_not_object")
        return {**args, **body}
    if kind == "application/x-www-form-urlencoded":
        try:
            return {
                **args,
                **dict(urllib.parse.parse_qsl(raw.decode("utf-8"), strict_parsing=True)),
            }
        except (ValueError, UnicodeDecodeError):
            raise ApiError("invalid_form_data") from None
    raise ApiError("invalid_post_type")


def _check_auth(fake: FakeSlack, header: str | None, args: dict[str, Any], is_json: bool) -> None:
    token = None
    if header and header.startswith("Bearer "):
        token = header[len("Bearer ") :].strip()
    elif not is_json:
        token = args.get("token")  # form bodies may carry the token; JSON bodies may not
    if not token:
        raise ApiError("not_authed")
    if token != fake.token:
        raise ApiError("invalid_auth")


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeSlack/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            """Keep test output quiet."""

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self._route()

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            self._route()

        def _route(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            wait = fake._take_delay()
            if wait:
                fake._stopping.wait(wait)
            if path.startswith("/api/"):
                self._api(path[len("/api/") :], raw, query)
            elif path.startswith("/response/") and self.command == "POST":
                self._response_url(urllib.parse.unquote(path[len("/response/") :]), raw)
            else:
                self._send(404, "text/plain", b"not found")

        def _api(self, method: str, raw: bytes, query: str) -> None:
            call = Call(method, {})
            with fake._lock:
                fake.calls.append(call)
            status, body, headers = self._api_answer(method, raw, query, call)
            call.status, call.response = status, body
            if isinstance(body, dict):
                for problem in response_problems(method, body):
                    fake._violation(problem)
                self._send(
                    status, "application/json; charset=utf-8", json.dumps(body).encode(), headers
                )
            else:
                self._send(status, "text/html; charset=utf-8", str(body).encode(), headers)

        def _api_answer(
            self, method: str, raw: bytes, query: str, call: Call
        ) -> tuple[int, Any, dict[str, str]]:
            content_type = self.headers.get("Content-Type") or ""
            try:
                args = _parse_args(content_type, raw, query)
                call.json = args
            except ApiError as exc:
                return 200, {"ok": False, "error": exc.error}, {}
            fault = fake._take_fault(method)
            if fault is not None:
                return fault.status, fault.body, fault.headers
            if method not in HANDLERS:
                fake._violation(f"unknown Web API method {method!r} (not modelled by the fake)")
                return 404, {"ok": False, "error": "unknown_method"}, {}
            for name in sorted(set(args) - KNOWN_ARGS[method]):
                fake._violation(f"{method}: argument {name!r} is not in the spec")
            try:
                _check_auth(fake, self.headers.get("Authorization"), args, "json" in content_type)
                return 200, HANDLERS[method](fake, args), {}
            except ApiError as exc:
                return 200, {"ok": False, "error": exc.error}, {}

        def _response_url(self, name: str, raw: bytes) -> None:
            status, text = _receive_response(
                fake, name, raw, self.headers.get("Content-Type") or ""
            )
            self._send(status, "text/plain; charset=utf-8", text.encode())

        def _send(
            self,
            status: int,
            content_type: str,
            payload: bytes,
            headers: dict[str, str] | None = None,
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test); nothing to tell it

    return Handler


def _receive_response(fake: FakeSlack, name: str, raw: bytes, content_type: str) -> tuple[int, str]:
    """Slack's response_url: a JSON message (text/blocks/response_type/replace_original)."""
    fault = fake._take_fault("response_url")
    if fault is not None:
        return fault.status, str(fault.body)
    with fake._lock:
        known, uses = name in fake._responses, len(fake._responses.get(name, []))
    if not known or uses >= MAX_RESPONSE_URL_USES:
        fake._violation(f"response_url {name!r}: unknown, or used more than 5 times")
        return 404, "no_service"
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        body = None
    if "json" not in content_type or not isinstance(body, dict):
        fake._violation(f"response_url {name!r}: body is not a JSON object")
        return 400, "invalid_payload"
    problems = _response_body_problems(body)
    for problem in problems:
        fake._violation(f"response_url {name!r}: {problem}")
    if problems:
        return 400, "no_text" if "no text" in problems[0] else "invalid_blocks"
    with fake._lock:
        fake._responses[name].append(body)
    return 200, "ok"


def _response_body_problems(body: dict[str, Any]) -> list[str]:
    if not body.get("text") and not body.get("blocks") and not body.get("delete_original"):
        return ["no text, blocks or delete_original"]
    problems = []
    if body.get("response_type", "ephemeral") not in ("in_channel", "ephemeral"):
        problems.append(f"response_type {body['response_type']!r} is not in_channel/ephemeral")
    if "blocks" in body:
        problems += [f"Block Kit: {p}" for p in block_kit_problems(body["blocks"])]
    return problems


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A running ``FakeSlack`` on 127.0.0.1 (random port), stopped after the test."""
    with FakeSlack() as fake:
        yield fake
