"""Prefect Block types: the configuration people see and edit in the Prefect UI.

``chatops config apply chatops.yaml`` writes them; the gateway and the flows read them:

- ``App`` (slug ``chatops-app``), saved under the app's name, e.g. ``shop``;
- ``Environment`` (slug ``chatops-environment``), saved as ``<app>-<environment>``;
- ``GitHubAccess`` (slug ``chatops-github``) and ``SlackAccess`` (slug ``chatops-slack``),
  saved as ``default``.

The blocks also answer the questions every request asks of them (which environment, which
hosts, which custom task, may this person deploy here?), so the gateway and the flows ask them
the same way.
"""

from blocks.app import App, environment_block_name
from blocks.environment import Environment
from blocks.errors import UnknownTarget
from blocks.github import GitHubAccess
from blocks.slack import SlackAccess

__all__ = [
    "App",
    "Environment",
    "GitHubAccess",
    "SlackAccess",
    "UnknownTarget",
    "environment_block_name",
]
