"""Requests as Slack and GitHub send them, signed, and a stand-in for Slack's ``response_url``.

Standard library only, like the rest of the harness.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chatops.signatures import sign_github, sign_slack  # standard library only

SLACK_SECRET = "bench-slack-signing-secret"
GITHUB_SECRET = "bench-github-webhook-secret"
SECRETS = {"CHATOPS_SLACK_SIGNING_SECRET": SLACK_SECRET}
SECRETS["CHATOPS_GITHUB_WEBHOOK_SECRET"] = GITHUB_SECRET
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def slash_command(
    text: str, user: str, response_url: str, trigger: str
) -> tuple[bytes, dict[str, str]]:
    """A ``/deploy`` slash command from ``user`` in #deploys: (body, headers)."""
    form = dict(token="ignored", team_id="T0BENCH001", team_domain="bench", command="/deploy")
    form |= dict(channel_id="C0BENCH001", channel_name="deploys", api_app_id="A0BENCH001")
    form |= dict(user_id=user, user_name=user.lower(), text=text, response_url=response_url)
    form["trigger_id"] = trigger
    body = urllib.parse.urlencode(form).encode()
    stamp = str(int(time.time()))
    return body, {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign_slack(body, stamp, SLACK_SECRET),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def deployment_webhook(
    deployment_id: int, sha: str, environment: str, repository: str
) -> tuple[bytes, dict[str, str]]:
    """GitHub's ``deployment`` webhook for a deployment of ``repository``: (body, headers)."""
    body = json.dumps(deployment_payload(deployment_id, sha, environment, repository)).encode()
    return body, {
        "X-GitHub-Event": "deployment",
        "X-Hub-Signature-256": sign_github(body, GITHUB_SECRET),
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
    }


def deployment_payload(
    deployment_id: int, sha: str, environment: str, repository: str
) -> dict[str, Any]:
    """GitHub's ``deployment`` event (octokit's example payload when available)."""
    fixtures = Path(os.environ.get("CHATOPS_FIXTURES", FIXTURES))
    try:
        payload = json.loads((fixtures / "github_webhooks" / "deployment.payload.json").read_text())
    except (OSError, ValueError):
        payload = {"action": "created", "deployment": {"creator": {}}, "repository": {}}
    payload["action"] = "created"
    payload["repository"]["full_name"] = repository
    where = {"environment": environment, "original_environment": environment}
    payload["deployment"].update(id=deployment_id, sha=sha, ref="main", task="deploy", payload={})
    payload["deployment"].update(where)
    payload["deployment"]["creator"]["login"] = "bench-bot"
    return payload


class ResponseSink:
    """A local stand-in for Slack's ``response_url``: ``.messages`` holds (epoch, path, body)
    of every message the gateway posts later; give each request its own ``url(name)``."""

    def __init__(self) -> None:
        messages: list[tuple[float, str, str]] = []
        self.messages = messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace")
                messages.append((time.time(), self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/slack/response"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str = "bench") -> str:
        return f"{self.base}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
