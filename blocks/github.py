"""The ``GitHubAccess`` block: how the flows reach GitHub's REST API."""

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound
from pydantic import Field, SecretStr

from blocks.app import GITHUB_WEB_URL
from blocks.schema import SchemaOnce


class GitHubAccess(SchemaOnce, Block):
    """A token for GitHub's REST API; ``api_url`` points at GitHub Enterprise when needed."""

    _block_type_name = "ChatOps GitHub"
    _block_type_slug = "chatops-github"
    _description = "Token and API URL used to record deployments and their statuses on GitHub."

    token: SecretStr = Field(description="Token with repo_deployment (or repo) scope.")
    api_url: str = Field(
        default="https://api.github.com",
        description="REST API base URL; https://HOST/api/v3 for GitHub Enterprise Server.",
    )

    @property
    def web_url(self) -> str:
        """Where people browse this GitHub: https://github.com, or the Enterprise server's host.

        >>> GitHubAccess(token="t", api_url="https://ghe.example.net/api/v3/").web_url
        'https://ghe.example.net'
        >>> GitHubAccess(token="t").web_url
        'https://github.com'
        """
        api = self.api_url.rstrip("/")
        if api == "https://api.github.com":
            return GITHUB_WEB_URL
        return api.removesuffix("/api/v3")

    def commit_url(self, repository: str, sha: str) -> str:
        """The page of commit ``sha`` of ``owner/name``."""
        return f"{self.web_url}/{repository}/commit/{sha}"

    def compare_url(self, repository: str, base: str, head: str) -> str:
        """The page of what ``head`` changes against ``base`` in ``owner/name``.

        >>> GitHubAccess(token="t", api_url="https://ghe.example.net/api/v3").compare_url(
        ...     "acme/shop", "1a2b3c4", "5d6e7f8")
        'https://ghe.example.net/acme/shop/compare/1a2b3c4...5d6e7f8'
        """
        return f"{self.web_url}/{repository}/compare/{base}...{head}"


def configured_web_url() -> str:
    """The web host of the configured GitHub (``chatops-github/default``): an Enterprise
    server's when its ``api_url`` points there, else github.com."""
    try:
        return GitHubAccess.load("default").web_url
    except (ValueError, ObjectNotFound):
        return GITHUB_WEB_URL
