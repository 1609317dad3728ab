"""The ``GitHubAccess`` block: how the flows reach GitHub's REST API."""

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class GitHubAccess(Block):
    """A token for GitHub's REST API; ``api_url`` points at GitHub Enterprise when needed."""

    _block_type_name = "ChatOps GitHub"
    _block_type_slug = "chatops-github"
    _description = "Token and API URL used to record deployments and their statuses on GitHub."

    token: SecretStr = Field(description="Token with repo_deployment (or repo) scope.")
    api_url: str = Field(
        default="https://api.github.com",
        description="REST API base URL; https://HOST/api/v3 for GitHub Enterprise Server.",
    )
