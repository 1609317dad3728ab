"""The runner: serves the deploy flow so the front door's requests become running deploys.

``python -m chatops.runner`` (started by ``chatops up``) registers the ``deploy/chatops``
and ``rollback/chatops`` deployments with the Prefect server and polls it for new runs every
``PREFECT_RUNNER_POLL_FREQUENCY`` seconds (``chatops up`` sets 1); each run gets its own
subprocess. For many machines, deploy the same flow to a work pool with prefect.yaml instead and
start workers there.
"""

import os

from prefect import serve

from chatops.settings import DEPLOYMENT_NAME, ROLLBACK_DEPLOYMENT_NAME
from flows.deploy import deploy
from flows.rollback import rollback

DEFAULT_LIMIT = 8


def main() -> None:
    deployments = [
        deploy.to_deployment(
            name=DEPLOYMENT_NAME.split("/", 1)[1],
            tags=["chatops"],
            description="Deploy a commit of an app to an environment.",
        ),
        rollback.to_deployment(
            name=ROLLBACK_DEPLOYMENT_NAME.split("/", 1)[1],
            tags=["chatops"],
            description="Switch an environment back to an earlier release.",
        ),
    ]
    serve(*deployments, limit=int(os.environ.get("CHATOPS_RUNNER_LIMIT", DEFAULT_LIMIT)))


if __name__ == "__main__":
    main()
