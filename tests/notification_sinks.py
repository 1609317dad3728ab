"""Receivers for notification tests, on 127.0.0.1: a webhook endpoint that records what it gets
(and can refuse), and an SMTP server (aiosmtpd) that keeps the mail.

No tests here; test_notifications.py and test_notifications_e2e.py use them.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Delivery:
    """One POST the webhook received: its headers and its raw body."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Webhook:
    """A local endpoint: ``url`` takes POSTs, answering ``status``; ``deliveries`` keeps them."""

    url: str = ""
    status: int = 200
    deliveries: list[Delivery] = field(default_factory=list)


@contextmanager
def webhook(status: int = 200) -> Iterator[Webhook]:
    sink = Webhook(status=status)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            sink.deliveries.append(Delivery(dict(self.headers.items()), body))
            self.send_response(sink.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/chatops"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Mailbox:
    """The mail an SMTP server on 127.0.0.1:``port`` accepted."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    def url(self, to: str = "qa@example.net") -> str:
        """The Apprise URL that sends e-mail to ``to`` through this server."""
        return f"mailto://127.0.0.1:{self.port}?from=chatops@example.net&to={to}"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            box.messages.append(message)  # type: ignore[arg-type]
            box.recipients.append(list(envelope.rcpt_tos))
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd checks its port by connecting: it needs a number
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
