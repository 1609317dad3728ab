"""Answer a Slack request later, through its ``response_url`` (valid 30 minutes, 5 uses)."""

import asyncio
import logging
from typing import Any

from slack_sdk.webhook import WebhookClient

logger = logging.getLogger("chatops.slack")


class WebhookResponder:
    """Posts with slack_sdk's ``WebhookClient``; a failed post is logged, never raised."""

    def __init__(self, timeout: int = 10) -> None:
        self.timeout = timeout

    async def send(
        self,
        response_url: str,
        text: str,
        public: bool = False,
        *,
        blocks: list[dict[str, Any]] | None = None,
        replace_original: bool = False,
    ) -> None:
        def post() -> int:
            client = WebhookClient(response_url, timeout=self.timeout)
            response_type = "in_channel" if public else "ephemeral"
            return client.send(
                text=text,
                blocks=blocks,
                response_type=response_type,
                replace_original=replace_original,
            ).status_code

        try:
            status = await asyncio.to_thread(post)
        except Exception as exc:  # the URL is a credential of sorts: never logged
            logger.warning("Posting to a response_url failed: %s", type(exc).__name__)
            return
        if status != 200:
            logger.warning("A response_url answered HTTP %s", status)
