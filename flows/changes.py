"""What a deploy changes against what its environment runs now: commits added and removed.

What runs now is the app environment's ``deployed-*`` record (:func:`adapters.history.
deployed_on`). With GitHub configured, GitHub's compare API counts the commits and gives the
compare link; without it, the app's mirror counts them (``git rev-list --left-right --count``).
"""

from adapters.github import github_client
from adapters.history import deployed_on
from blocks.github import GitHubAccess, configured_web_url
from model.summary import Change
from model.target import Target
from tasks.git import commits_apart, mirror_path


def what_changes(target: Target, sha: str, github: GitHubAccess | None) -> Change | None:
    """What deploying ``sha`` to ``target`` changes; None when what runs there is unknown.

    Raises what GitHub or git raise when they cannot compare: the caller logs it.
    """
    running = deployed_on(target.app_name, target.environment_name)
    if running is None:
        return Change(0, 0, None)
    base = running.sha
    if not base:
        return None  # a record without its commit: nothing to compare with
    if github is not None:
        return compare_on_github(github, target.app.repository, base, sha)
    mirror = mirror_path(target.app.clone_url_on(configured_web_url()))
    added, removed = commits_apart(mirror, base, sha)
    return Change(added, removed, base)


def compare_on_github(github: GitHubAccess, repository: str, base: str, head: str) -> Change:
    """GitHub's count of commits ``head`` adds (``ahead_by``) and removes (``behind_by``)
    against ``base``, with its compare page."""
    comparison = github_client(github, lazy=True).get_repo(repository).compare(base, head)
    url = comparison.html_url or github.compare_url(repository, base, head)
    return Change(comparison.ahead_by, comparison.behind_by, base, url)
