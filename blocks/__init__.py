"""Prefect Block types: the configuration people see and edit in the Prefect UI.

``chatops config apply chatops.yaml`` writes them; the flows load them by name:

- ``App`` (slug ``chatops-app``), saved under the app's name, e.g. ``shop``;
- ``Environment`` (slug ``chatops-environment``), saved as ``<app>-<environment>``;
- ``GitHubAccess`` (slug ``chatops-github``) and ``SlackAccess`` (slug ``chatops-slack``),
  saved as ``default``.
"""

from blocks.app import App
from blocks.environment import Environment
from blocks.github import GitHubAccess
from blocks.slack import SlackAccess

__all__ = ["App", "Environment", "GitHubAccess", "SlackAccess"]
