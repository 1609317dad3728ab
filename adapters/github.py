"""The GitHub API client every GitHub call goes through (PyGithub), for a configured access."""

from github import Auth, Github, GithubRetry

from blocks.github import GitHubAccess


def github_client(access: GitHubAccess, lazy: bool = False) -> Github:
    """A PyGithub client for ``access``: GETs retried on 5xx, writes never retried here.

    A ``lazy`` client builds objects from ids without fetching them first.
    """
    retry = GithubRetry(total=3, backoff_factor=0.5, allowed_methods={"GET", "HEAD"})
    return Github(
        auth=Auth.Token(access.token.get_secret_value()),
        base_url=access.api_url,
        retry=retry,
        timeout=20,
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=lazy,
    )
