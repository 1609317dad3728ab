"""The runner: serves the deploy flow so the front door's requests become running deploys.

``python -m chatops.runner`` (started by ``chatops up``) registers the ``deploy/chatops``
deployment with the Prefect server and polls it for new runs every
``PREFECT_RUNNER_POLL_FREQUENCY`` seconds (``chatops up`` sets 1); each run gets its own
subprocess. For many machines, deploy the same flow to a work pool with prefect.yaml instead and
start workers there.
"""

import os

from prefect import serve

from chatops.settings import DEPLOYMENT_NAME
from flows.deploy import deploy

DEFAULT_LIMIT = 8


def main() -> None:
    name = DEPLOYMENT_NAME.split("/", 1)[1]
    deployment = deploy.to_deployment(name=name, tags=["chatops"],
                                      description="Deploy an app to an environment.")
    serve(deployment, limit=int(os.environ.get("CHATOPS_RUNNER_LIMIT", DEFAULT_LIMIT)))


if __name__ == "__main__":
    main()
