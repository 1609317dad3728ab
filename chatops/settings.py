"""Names and settings of the front door, read from the environment (standard library only, so
the CLI can read them without loading Prefect).

The state directories are :mod:`adapters.home` (``CHATOPS_HOME``).
"""

import os
from dataclasses import dataclass

from adapters.home import home

DEPLOY_DEPLOYMENT = "deploy/chatops"
"""The Prefect deployment (``<flow>/<deployment>``) that deploys start."""
ROLLBACK_DEPLOYMENT = "rollback/chatops"
"""The Prefect deployment that switches an environment back to a release it already has."""
VERIFY_DEPLOYMENT = "verify/chatops"
NOOP_DEPLOYMENT = "noop/chatops"
"""The Prefect deployment that reads every host of an app and reports drift."""
DEPLOYMENTS = (DEPLOY_DEPLOYMENT, ROLLBACK_DEPLOYMENT, VERIFY_DEPLOYMENT, NOOP_DEPLOYMENT)

STOP_GRACE_SECONDS = 600.0
"""Default of ``CHATOPS_STOP_GRACE_SECONDS``: sized to the longest batch (a restart plus its
health check, ``health_timeout`` 120 s by default) and the switch back after it."""


DEAD_RUN_SECRET = "dead-run-webhook"
"""The secret (``$CHATOPS_HOME/secrets/dead-run-webhook``) Prefect's automation sends the gateway
when it finds a silent run (:mod:`chatops.dead_runs`)."""
SILENT_RUNS_PATH = "/prefect/silent-runs"
"""Where the gateway listens for that automation."""
SILENT_RUNS_HEADER = "X-Chatops-Secret"
"""The header that carries the secret."""


def stop_grace_seconds() -> float:
    """How long the runner lets its runs in flight end on SIGTERM before it SIGKILLs them
    (``CHATOPS_STOP_GRACE_SECONDS``): a deploy finishes its batch and switches back meanwhile."""
    return float(os.environ.get("CHATOPS_STOP_GRACE_SECONDS", STOP_GRACE_SECONDS))


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway needs to know; :meth:`from_env` reads it from the environment."""

    slack_signing_secret: str = ""
    github_webhook_secret: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    slack_budget: float = 0.6
    """Seconds a Slack answer waits for its run to be created before saying "queued"."""
    query_budget: float = 2.0
    """Seconds a Slack answer waits for Prefect reads (status, locks) before answering later."""
    catalog_refresh_seconds: float = 5.0
    catalog_reread_seconds: float = 1.0
    """Least seconds between two extra reads of the configuration made because a request named
    something it lacks (a burst of unknown names costs one read per this, not one each)."""
    intake_keep_days: float = 7.0
    """How long finished requests stay in the intake (``CHATOPS_INTAKE_KEEP_DAYS``)."""
    silent_runs_secret: str = ""
    """What Prefect's silent-run automation must send (``secrets/dead-run-webhook``)."""

    @classmethod
    def from_env(cls) -> "GatewaySettings":
        return cls(
            slack_signing_secret=os.environ.get("CHATOPS_SLACK_SIGNING_SECRET", ""),
            github_webhook_secret=os.environ.get("CHATOPS_GITHUB_WEBHOOK_SECRET", ""),
            host=os.environ.get("CHATOPS_GATEWAY_HOST", "127.0.0.1"),
            port=int(os.environ.get("CHATOPS_GATEWAY_PORT", "8000")),
            intake_keep_days=float(os.environ.get("CHATOPS_INTAKE_KEEP_DAYS", "7")),
            silent_runs_secret=home().secret(DEAD_RUN_SECRET),
        )
