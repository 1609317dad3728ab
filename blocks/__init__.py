"""Prefect Block types: the configuration people see and edit in the Prefect UI.

``chatops config apply chatops.yaml`` writes them; the gateway and the flows read them:

- ``App`` (slug ``chatops-app``), saved under the app's name, e.g. ``shop``;
- ``Environment`` (slug ``chatops-environment``), saved as ``<app>-<environment>``;
- ``GitHubAccess`` (slug ``chatops-github``) and ``SlackAccess`` (slug ``chatops-slack``),
  saved as ``default``.

The blocks also answer the questions every request asks of them (which environment, which
hosts, which custom task, may this person deploy here?), so the gateway and the flows ask them
the same way.

Below them, for every layer: the error family (:mod:`model.errors`) and small helpers
(:mod:`adapters.files`, :mod:`adapters.net`) that load no Prefect. The names below load their module
on first use, so importing those (the CLI does, for its errors) does not load Prefect either.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blocks.app import App, environment_block_name
    from blocks.environment import Environment
    from blocks.github import GitHubAccess
    from blocks.slack import SlackAccess
    from model.errors import UnknownTarget

_HOME = {
    "App": "blocks.app",
    "environment_block_name": "blocks.app",
    "Environment": "blocks.environment",
    "GitHubAccess": "blocks.github",
    "SlackAccess": "blocks.slack",
    "UnknownTarget": "model.errors",
}

__all__ = [
    "App",
    "Environment",
    "GitHubAccess",
    "SlackAccess",
    "UnknownTarget",
    "environment_block_name",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'blocks' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
