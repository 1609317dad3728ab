"""One deploy at a time per app environment.

Deploys and rollbacks of the same app environment take turns through a Prefect global
concurrency limit named ``deploy-<app>-<environment>`` (limit 1, created on first use). A run
that has to wait says so in its log and waits its turn.

The run holding the slot keeps renewing its lease (60 s) and notes the lease's id on its flow
run (the label ``chatops.slot-lease``), where any process can read it. When the run is known
dead (the runner saw its process end, or a restarted runner found it orphaned), its slot is
released at once through that lease (:func:`release_dead`); had nobody noticed, the lease would
run out about a minute later (the server keeps it on disk, so a server restart does not forget
it). Releasing by lease never frees a slot another run holds: a lease names one holding, and
releasing one that already ran out does nothing.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from uuid import UUID

from prefect import runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import (
    acquire_concurrency_slots_with_lease,
    release_concurrency_slots_with_lease,
)
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger

LEASE_SECONDS = 60
"""The shortest lease Prefect allows: a dead deploy nobody noticed frees its slot a minute later."""
LEASE_LABEL = "chatops.slot-lease"
"""The flow run label that names the lease of the slot the run holds (or held)."""
FIRST_LOOK_SECONDS = 1.0
WAIT_SECONDS = 3600


def limit_name(app: str, environment: str) -> str:
    return f"deploy-{app}-{environment}"


def create_limit(name: str) -> None:
    """Create the environment's limit (limit 1); harmless when another run just did."""
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _holder() -> ConcurrencyLeaseHolder | None:
    run_id = runtime.flow_run.id
    return ConcurrencyLeaseHolder(type="flow_run", id=UUID(str(run_id))) if run_id else None


def acquire(name: str) -> UUID:
    """Take the slot of limit ``name``; return the lease's id.

    A free slot is taken in one API call; the limit is created on first use. When another
    deploy holds the slot, the run's log says so once, and it waits its turn.
    """
    waited = created = False
    while True:
        try:
            return acquire_concurrency_slots_with_lease(
                [name],
                1,
                timeout_seconds=WAIT_SECONDS if waited else FIRST_LOOK_SECONDS,
                lease_duration=LEASE_SECONDS,
                strict=True,
                holder=_holder(),
            ).lease_id
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


def note_lease(lease_id: UUID) -> None:
    """Label this flow run with its slot's lease, so whoever finds the run dead can free it."""
    run_id = runtime.flow_run.id
    if run_id:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(str(run_id)), {LEASE_LABEL: str(lease_id)})


def take_turn(name: str) -> ExitStack:
    """The environment's slot, held (its lease renewed) by the returned stack until it closes."""
    lease_id = acquire(name)
    slot = ExitStack()
    slot.callback(release_concurrency_slots_with_lease, lease_id)
    try:
        note_lease(lease_id)
        slot.enter_context(
            maintain_concurrency_lease(lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=True)
        )
    except BaseException:
        slot.close()
        raise
    return slot


def release_dead(flow_run_id: UUID | str) -> bool:
    """Release the slot of a run known dead (its process is gone), if it held one.

    Returns whether a lease was released (one that already ran out, or was released by the
    run itself, is a no-op on the server). Call it only for a run whose process has ended.
    """
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(str(flow_run_id)))
        except ObjectNotFound:
            return False
        lease = run.labels.get(LEASE_LABEL)
        if not lease:
            return False
        client.release_concurrency_slots_with_lease(UUID(str(lease)))
    return True


@contextmanager
def one_at_a_time(app: str, environment: str) -> Iterator[None]:
    """Hold the app environment's slot for the duration of the block."""
    with take_turn(limit_name(app, environment)):
        yield
