"""One deploy at a time per app environment.

Deploys and rollbacks of the same app environment take turns through a Prefect global
concurrency limit named ``deploy-<app>-<environment>`` (limit 1, created on first use). A run
that has to wait says so in its log and waits its turn. If the deploy's process dies, its slot's
lease runs out about a minute later (the lease is kept on disk by the server, so a server
restart does not forget it) and the environment is deployable again.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.logging import get_run_logger

LEASE_SECONDS = 60
"""The shortest lease Prefect allows: a dead deploy's slot frees about a minute later."""
FIRST_LOOK_SECONDS = 1.0
WAIT_SECONDS = 3600


def limit_name(app: str, environment: str) -> str:
    return f"deploy-{app}-{environment}"


def create_limit(name: str) -> None:
    """Create the environment's limit (limit 1); harmless when another run just did."""
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def take_turn(name: str) -> ExitStack:
    """The environment's slot, held by the returned stack until it closes.

    A free slot is taken in one API call; the limit is created on first use. When another
    deploy holds the slot, the run's log says so once, and it waits its turn.
    """
    waited = created = False
    while True:
        slot = ExitStack()
        try:
            slot.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    lease_duration=LEASE_SECONDS,
                    strict=True,
                    timeout_seconds=WAIT_SECONDS if waited else FIRST_LOOK_SECONDS,
                )
            )
            return slot
        except ConcurrencySlotAcquisitionError:
            if created:
                raise
            create_limit(name)  # the first deploy of this app environment
            created = True
        except TimeoutError:
            if waited:
                raise
            get_run_logger().info(
                "Another deploy of this app environment is running (%s); waiting for it", name
            )
            waited = True


@contextmanager
def one_at_a_time(app: str, environment: str) -> Iterator[None]:
    """Hold the app environment's slot for the duration of the block."""
    with take_turn(limit_name(app, environment)):
        yield
