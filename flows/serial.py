"""One deploy at a time per app environment.

Deploys and rollbacks of the same app environment take turns through a Prefect global
concurrency limit named ``deploy-<app>-<environment>`` (limit 1, created on first use). A run
that has to wait says so in its log and waits its turn.

A waiting run records who holds the slot (:func:`slot_holder`: the run of that app environment
noted as its holder most recently, as a :class:`~model.summary.SlotHolder`) on its own flow run,
as JSON in the label ``chatops.waiting-for`` (emptied once it takes the slot), and hands it to
the caller (the Slack card): when the wait starts and whenever the holder changes. The CLI
reads that label through the gateway. Presentation is theirs; this module only records.

Taking the slot is one API call whose answer says which it is: the slot is ours, another run
holds it (HTTP 423), or the limit does not exist yet. A slow answer is a busy server, never
"taken": the run's log says so when the first answer took longer than
:data:`SLOW_ANSWER_SECONDS`, and says another deploy is running only when Prefect refused the
slot and such a run is seen (otherwise, that the slot is held by a run that ended without
releasing it, whose lease runs out).

The run holding the slot keeps renewing its lease (60 s) and notes the lease's id on its flow
run (the label ``chatops.slot-lease``), where any process can read it. When the run is known
dead (the runner saw its process end, or a restarted runner found it orphaned), its slot is
released at once through that lease (:func:`release_dead`); had nobody noticed, the lease would
run out about a minute later (the server keeps it on disk, so a server restart does not forget
it). Releasing by lease never frees a slot another run holds: a lease names one holding, and
releasing one that already ran out does nothing.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from uuid import UUID

from prefect import runtime
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, FlowRun, StateType
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import release_concurrency_slots_with_lease
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.logging import get_run_logger
from prefect.utilities.urls import url_for

from model.summary import PREVIOUS, WAITING_LABEL, SlotHolder, run_tags

LEASE_SECONDS = 60
"""The shortest lease Prefect allows: a dead deploy nobody noticed frees its slot a minute later."""
LEASE_LABEL = "chatops.slot-lease"
"""The flow run label that names the lease of the slot the run holds (or held)."""
SINCE_LABEL = "chatops.slot-since"
"""When the run took its slot (ISO 8601, UTC)."""
BY_LABEL = "chatops.slot-by"
"""Who the run holding (or that held) the slot deploys for, as the run believed it."""
KIND_LABEL = "chatops.slot-kind"
"""What the run holding (or that held) the slot does: ``deploy`` or ``rollback``."""
SLOW_ANSWER_SECONDS = 1.0
"""A first answer about the slot slower than this is reported: the Prefect server was busy."""
LOOK_SECONDS = 5.0
"""While waiting, how often the run looks again who holds the slot (and asks for it at least)."""
ASK_AGAIN_MIN_SECONDS = 0.1
"""The shortest pause before asking again for a slot that is taken (Prefect suggests one)."""
WAIT_SECONDS = 3600
HOLDING = [StateType.RUNNING, StateType.CANCELLING]
Waiting = Callable[[SlotHolder | None], None]
"""Told the holder of the slot a run waits for (again when it changes), then None once the
run holds the slot."""


def limit_name(app: str, environment: str) -> str:
    return f"deploy-{app}-{environment}"


def create_limit(name: str) -> None:
    """Create the environment's limit (limit 1); harmless when another run just did."""
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _holder() -> ConcurrencyLeaseHolder | None:
    run_id = runtime.flow_run.id
    return ConcurrencyLeaseHolder(type="flow_run", id=UUID(str(run_id))) if run_id else None


@dataclass(frozen=True)
class SlotAnswer:
    """Prefect's answer to one ask for the slot: ours (``lease_id``), ``taken`` by another
    holder (ask again after ``retry_after`` seconds), or neither: the limit does not exist."""

    lease_id: UUID | None = None
    taken: bool = False
    retry_after: float = 0.0


def ask_for_slot(client: SyncPrefectClient, name: str) -> SlotAnswer:
    """Ask once for the slot of limit ``name``, waiting for the answer however long it takes
    (a busy server is slow, and a slow answer is no answer about the slot)."""
    try:
        response = client.increment_concurrency_slots_with_lease(
            names=[name],
            slots=1,
            mode="concurrency",
            lease_duration=LEASE_SECONDS,
            holder=_holder(),
        )
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 423:  # 423 Locked: another holder has the slot
            raise
        retry_after = float(exc.response.headers.get("Retry-After") or LOOK_SECONDS)
        return SlotAnswer(taken=True, retry_after=retry_after)
    body = response.json()
    if not body.get("limits"):
        return SlotAnswer()
    return SlotAnswer(lease_id=UUID(str(body["lease_id"])))


def acquire(
    name: str,
    held_by: Callable[[], SlotHolder | None] | None = None,
    waiting: Waiting | None = None,
) -> tuple[UUID, bool]:
    """Take the slot of limit ``name``; return the lease's id, and whether the run waited.

    A free slot is taken in one API call; the limit is created on first use. A first answer
    that took longer than :data:`SLOW_ANSWER_SECONDS` is logged as the server being busy. When
    another run holds the slot, the run's log says so once (naming the deploy that runs, or
    saying none is seen), and it waits its turn, asking again when Prefect suggests and looking
    every :data:`LOOK_SECONDS` who holds it (``held_by``): when the holder is new, it is
    recorded (:func:`note_waiting`) and handed to ``waiting``.
    """
    waited = created = False
    shown: SlotHolder | None = None
    deadline = time.monotonic() + WAIT_SECONDS
    next_look = 0.0
    with get_client(sync_client=True) as client:
        while True:
            asked = time.monotonic()
            answer = ask_for_slot(client, name)
            took = time.monotonic() - asked
            if answer.lease_id is not None:
                if not waited and took > SLOW_ANSWER_SECONDS:
                    get_run_logger().info(
                        "Took the slot of %s after %.1f s: the Prefect server was busy and slow "
                        "to answer; no other deploy held it",
                        name,
                        took,
                    )
                return answer.lease_id, waited
            if not answer.taken:
                if created:
                    raise ConcurrencySlotAcquisitionError(f"the limit {name} could not be created")
                create_limit(name)  # the first deploy of this app environment
                created = True
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {WAIT_SECONDS} s for the slot of {name}")
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + LOOK_SECONDS
                holder = held_by() if held_by else None
                if not waited:
                    get_run_logger().info(taken_line(name, holder))
                if holder is not None and holder != shown:
                    shown = holder
                    note_waiting(holder)
                    if waiting:
                        waiting(holder)
            waited = True
            pause = min(answer.retry_after, max(0.0, next_look - time.monotonic()))
            time.sleep(max(ASK_AGAIN_MIN_SECONDS, pause))


def taken_line(name: str, holder: SlotHolder | None) -> str:
    """What the run's log says when Prefect refused the slot: who holds it, if anyone runs."""
    if holder is None:
        return (
            f"The slot of this app environment ({name}) is held, but no running deploy of it is "
            f"seen (a run that ended without releasing it; its lease runs out within "
            f"{LEASE_SECONDS} s); waiting for it"
        )
    return (
        f"Another deploy of this app environment is running ({name}: {holder.title}, "
        f"{holder.kind} by {holder.requested_by}); waiting for it"
    )


def slot_holder(app: str, environment: str) -> SlotHolder | None:
    """The run of ``app`` in ``environment`` that holds its slot (the one, other than this
    run, that took it last and is still running), or None if none is seen."""
    me = str(runtime.flow_run.id or "")
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=run_tags(app, environment)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=HOLDING)),
            ),
            limit=50,
        )
    holders = [r for r in runs if str(r.id) != me and r.labels.get(LEASE_LABEL)]
    if not holders:
        return None
    run = max(holders, key=lambda r: str(r.labels.get(SINCE_LABEL) or ""))
    return described(run, app, environment)


def described(run: FlowRun, app: str, environment: str) -> SlotHolder:
    """``run``, holding the slot, as people are told of it."""
    parameters = run.parameters
    return SlotHolder(
        run_id=str(run.id),
        title=run.name,
        kind=str(run.labels.get(KIND_LABEL) or "deploy"),
        app=app,
        environment=environment,
        ref=str(parameters.get("ref") or parameters.get("sha") or PREVIOUS),
        requested_by=str(run.labels.get(BY_LABEL) or "someone"),
        since=str(run.labels.get(SINCE_LABEL) or ""),
        run_url=url_for("flow-run", obj_id=run.id),
    )


def note_waiting(holder: SlotHolder | None) -> None:
    """Record on this flow run who holds the slot it waits for (None: it holds it now)."""
    run_id = runtime.flow_run.id
    if run_id:
        value = json.dumps(asdict(holder)) if holder else ""
        get_run_logger().info("Waiting for the slot: %s", value)
        try:
            with get_client(sync_client=True) as client:
                client.update_flow_run_labels(UUID(str(run_id)), {WAITING_LABEL: value})
        except Exception as exc:  # the terminal misses the news; the wait goes on
            get_run_logger().warning("Could not record who holds the slot: %s", exc)


def note_lease(lease_id: UUID, by: str = "", waited: bool = False) -> None:
    """Label this flow run with its slot's lease, so whoever finds the run dead can free it,
    with when it took the slot and for whom (what runs waiting for it show); a run that
    waited no longer does."""
    run_id = runtime.flow_run.id
    if run_id:
        labels = {
            LEASE_LABEL: str(lease_id),
            SINCE_LABEL: datetime.now(UTC).isoformat(timespec="seconds"),
            BY_LABEL: by,
            KIND_LABEL: str(runtime.flow_run.flow_name or "deploy"),
        }
        if waited:
            labels[WAITING_LABEL] = ""
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(str(run_id)), labels)


def take_turn(
    app: str, environment: str, by: str = "", waiting: Waiting | None = None
) -> ExitStack:
    """The environment's slot, held (its lease renewed) by the returned stack until it closes.

    ``by`` is who the run deploys for (noted for runs that wait for it); ``waiting`` is told
    who holds the slot while this run waits (see :data:`Waiting`).
    """

    def held_by() -> SlotHolder | None:
        try:
            return slot_holder(app, environment)
        except Exception as exc:  # who holds it is news, not a reason to stop waiting
            get_run_logger().warning("Could not tell who holds %s: %s", app, exc)
            return None

    lease_id, waited = acquire(limit_name(app, environment), held_by, waiting)
    slot = ExitStack()
    slot.callback(release_concurrency_slots_with_lease, lease_id)
    try:
        note_lease(lease_id, by, waited)
        if waited and waiting:
            waiting(None)
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
def one_at_a_time(
    app: str, environment: str, by: str = "", waiting: Waiting | None = None
) -> Iterator[None]:
    """Hold the app environment's slot for the duration of the block (see :func:`take_turn`)."""
    with take_turn(app, environment, by, waiting):
        yield
