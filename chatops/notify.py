"""Telling people what became of a request after its first answer (see :mod:`chatops.intake`).

Slack requests are answered through their ``response_url``; GitHub deployments through a
deployment status, posted with the token of the ``chatops-github/default`` block (when there is
none, GitHub reporting is off for the flows too, and nothing is posted).
"""

import asyncio
from typing import Any

from prefect.exceptions import ObjectNotFound

from adapters.slack import post_message, slack_client
from blocks import GitHubAccess, SlackAccess
from chatops.intake import Job, Started
from chatops.slack.respond import WebhookResponder
from render.slack_card import escape_mrkdwn
from tasks.github import post_status


class PeopleNotifier:
    """The :class:`~chatops.intake.Notifier` of the gateway."""

    def __init__(self, responder: WebhookResponder) -> None:
        self.responder = responder

    async def started(self, job: Job, started: Started) -> None:
        if job.reply.response_url:
            title = escape_mrkdwn(job.payload["title"])
            link = f"<{started.url}|{title}>" if started.url else f"`{title}`"
            text = f"{job.reply.mention or 'Someone'}: *{title}* has started. Follow it: {link}"
            await self.responder.send(job.reply.response_url, text, public=True)

    async def waiting(self, job: Job, why: str) -> None:
        title = job.payload["title"]
        if job.reply.response_url:
            text = (
                f":hourglass: *{escape_mrkdwn(title)}* is still waiting to start (Prefect: "
                f"{escape_mrkdwn(why[:200])}). It is kept and starts as soon as it can."
            )
            await self.responder.send(job.reply.response_url, text)
        await self._github(job, "queued", f"Waiting to start {title}: Prefect is not answering")

    async def failed(self, job: Job, why: str) -> None:
        title = job.payload["title"]
        if job.reply.response_url:
            text = f":x: *{escape_mrkdwn(title)}* cannot start: {escape_mrkdwn(why[:300])}"
            await self.responder.send(job.reply.response_url, text)
        await self._github(job, "error", f"Cannot start {title}: {why}")

    async def post_github_status(self, payload: dict[str, Any]) -> None:
        access = await _github_access()
        if access is not None:
            await asyncio.to_thread(post_status, access, **payload)

    async def post_slack_message(self, payload: dict[str, Any]) -> None:
        """Post ``payload["text"]`` to channel ``payload["channel"]`` with the bot token of the
        ``chatops-slack/default`` block (nothing without one)."""
        access = await configured_block(SlackAccess)
        if access is not None:
            client = slack_client(access)
            await asyncio.to_thread(post_message, client, payload["channel"], payload["text"])

    async def _github(self, job: Job, state: str, description: str) -> None:
        if job.reply.repository and job.reply.deployment_id:
            await self.post_github_status(
                {
                    "repository": job.reply.repository,
                    "deployment_id": job.reply.deployment_id,
                    "state": state,
                    "description": description,
                    "log_url": None,
                    "environment_url": None,
                }
            )


async def _github_access() -> GitHubAccess | None:
    return await configured_block(GitHubAccess)


async def configured_block(block_type: Any) -> Any | None:
    """The ``default`` block of ``block_type``, or None when it is not configured."""
    try:
        return await block_type.aload("default")
    except (ValueError, ObjectNotFound):
        return None
