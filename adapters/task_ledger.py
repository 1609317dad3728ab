"""A run's own account of its task runs, for the terminal that follows it.

The Prefect server records task runs from the events their process sends, and when a wave of
hosts ends at once it records the last ones seconds after the run itself has ended (the CLI,
waiting for them, exited 7.95 s after the run's end at 64 hosts: results/sweep.json of commit
065b7de). The run's process knows each of its task runs the moment it ends. So every task of a
deploy or rollback notes its end here (:data:`HOOKS`, Prefect state hooks), the flow writes the
list as its last act (:func:`write`, a table artifact of the run, key :data:`KEY`), and the
gateway answers a look at an ended run from it (:func:`read`): the terminal shows every task
line at once instead of waiting for the server's records.
"""

import json
import logging
import threading
from typing import Any
from uuid import UUID

from prefect import runtime
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)

KEY = "task-runs"
_lock = threading.Lock()
_ended: dict[str, dict[str, dict[str, Any]]] = {}
"""Flow run id → task run id → the task run as the gateway answers it (see :func:`read`)."""


def note_end(task: Any, task_run: Any, state: Any) -> None:
    """A state hook: ``task_run`` reached its final ``state``."""
    row = {
        "id": str(task_run.id),
        "name": task_run.name,
        "state_type": state.type.value,
        "total_run_time": task_run.total_run_time.total_seconds(),
    }
    with _lock:
        _ended.setdefault(str(task_run.flow_run_id), {})[row["id"]] = row


HOOKS: dict[str, Any] = {"on_completion": [note_end], "on_failure": [note_end]}
"""The options that make a task note its end: ``@task(..., **HOOKS)``."""


class _HookNews(logging.Filter):
    """Prefect logs two lines to the run for every hook it calls; these are bookkeeping, not
    news, and would double a deploy's log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return note_end.__name__ not in record.getMessage()


logging.getLogger("prefect.task_runs").addFilter(_HookNews())


def write() -> None:
    """Write what this flow run's tasks noted, as a table artifact of the run; never raises
    (without it, the terminal waits for the server's records as before)."""
    run_id = str(runtime.flow_run.id or "")
    with _lock:
        rows = list(_ended.pop(run_id, {}).values())
    if not run_id:
        return
    try:
        create_table_artifact(
            rows, key=KEY, description="Every task run of this run, as its process saw it end"
        )
    except Exception as exc:  # noqa: BLE001 - the deploy's outcome does not depend on it
        logging.getLogger("chatops.ledger").warning("Could not write the task runs: %s", exc)


async def read(client: PrefectClient, run_id: UUID) -> list[dict[str, Any]] | None:
    """The task runs flow run ``run_id`` wrote at its end (:func:`write`); None if it did not."""
    found = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), key=ArtifactFilterKey(any_=[KEY])
        ),
        limit=1,
    )
    if not found:
        return None
    try:
        rows = json.loads(str(found[0].data or ""))
    except ValueError:
        return None
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else None
