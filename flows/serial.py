"""One deploy at a time per app environment.

Deploys and rollbacks of the same app environment take turns through a Prefect global
concurrency limit named ``deploy-<app>-<environment>`` (limit 1, created on first use). A run
that has to wait says so in its log and waits its turn. If a runner dies mid-deploy, its slot's
lease runs out after about a minute and the environment is deployable again.
"""

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger

LEASE_SECONDS = 60
WAIT_SECONDS = 3600


def limit_name(app: str, environment: str) -> str:
    return f"deploy-{app}-{environment}"


def ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )


def busy(name: str) -> bool:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots > 0


@contextmanager
def one_at_a_time(app: str, environment: str) -> Iterator[None]:
    """Hold the app environment's slot for the duration of the block."""
    name = limit_name(app, environment)
    ensure_limit(name)
    if busy(name):
        get_run_logger().info(
            "Another deploy of %s %s is running; waiting for it to finish", app, environment
        )
    with concurrency(
        name, occupy=1, timeout_seconds=WAIT_SECONDS, lease_duration=LEASE_SECONDS, strict=True
    ):
        yield
