"""The ``SlackAccess`` block: the bot token the flows post deploy progress with."""

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.schema import SchemaOnce


class SlackAccess(SchemaOnce, Block):
    """A Slack bot token (``xoxb-...``) with the chat:write scope."""

    _block_type_name = "ChatOps Slack"
    _block_type_slug = "chatops-slack"
    _description = "Bot token used to post and update deploy messages in Slack."

    bot_token: SecretStr = Field(description="Bot token, xoxb-...")
    api_url: str = Field(default="https://slack.com/api/", description="Slack Web API base URL.")
