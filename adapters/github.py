"""The GitHub API client every GitHub call goes through (PyGithub), for a configured access."""

from github import Auth, Github, GithubRetry

from blocks.github import GitHubAccess

RETRY_BACKOFF_SECONDS = 0.5
"""urllib3's backoff factor for GETs GitHub answered with a 5xx: 0, 1 and 2 s before the three
tries again."""


def github_client(access: GitHubAccess, lazy: bool = False) -> Github:
    """A PyGithub client for ``access``: GETs retried on 5xx, writes never retried here.

    A ``lazy`` client builds objects from ids without fetching them first.
    """
    retry = GithubRetry(
        total=3, backoff_factor=RETRY_BACKOFF_SECONDS, allowed_methods={"GET", "HEAD"}
    )
    return Github(
        auth=Auth.Token(access.token.get_secret_value()),
        base_url=access.api_url,
        retry=retry,
        timeout=20,
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=lazy,
    )
