"""The intake's store keeps what it must and gives back what it need not keep."""

import asyncio
import time
from pathlib import Path

from chatops.intake import Intake, ReplyTo, Started, Store
from chatops.request import Run


def _finished(store: Store, key: str, state: str = "started") -> int:
    job = store.add(key, "run", {"deployment": "deploy/chatops", "key": key}, ReplyTo())
    store.update(job, state=state, run_id=f"run-{key}")
    return job


def test_old_finished_requests_are_deleted_and_the_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "intake.db"
    store = Store(path)
    padding = "x" * 8000  # large rows, so that the freed space is plain to see
    for n in range(400):
        job = store.add(f"old-{n}", "run", {"key": f"old-{n}", "pad": padding}, ReplyTo())
        store.update(job, state="failed" if n % 7 == 0 else "started")
    queued = store.add("waiting", "run", {"key": "waiting"}, ReplyTo())
    store.update(queued, state="queued")
    _finished(store, "recent")
    cutoff = time.time()
    time.sleep(0.01)
    recent = _finished(store, "after-cutoff")
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size

    deleted = store.prune(cutoff)

    assert deleted == 401  # every finished job last changed before the cutoff
    kept = {job.key for job in store.jobs()}
    assert kept == {"waiting", "after-cutoff"}  # queued jobs are never deleted
    assert store.ticket(recent).run_id == "run-after-cutoff"
    after = path.stat().st_size
    print(f"measured: intake.db {before} bytes before, {after} after pruning 401 requests")
    assert after < before / 10


def test_a_store_made_before_pruning_existed_is_converted_once(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "intake.db"
    legacy = sqlite3.connect(path)
    legacy.execute("CREATE TABLE t (x)")  # auto_vacuum off, as every earlier store was
    legacy.commit()
    legacy.close()

    store = Store(path)

    assert store._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    store.close()


class _Creator:
    async def create(self, run: Run) -> Started:
        return Started("id", None)


class _Quiet:
    async def started(self, *args: object) -> None: ...
    async def waiting(self, *args: object) -> None: ...
    async def failed(self, *args: object) -> None: ...
    async def post_github_status(self, *args: object) -> None: ...


def test_the_dispatcher_prunes_when_the_gateway_starts(tmp_path: Path) -> None:
    path = tmp_path / "intake.db"
    store = Store(path)
    old = _finished(store, "old")
    store._db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (time.time() - 3 * 86400, old))
    _finished(store, "new")
    store.close()

    async def start_and_stop() -> list[str]:
        intake = Intake(path, _Creator(), _Quiet(), keep_seconds=86400)
        intake.start()
        await asyncio.sleep(0.3)
        keys = [job.key for job in intake.store.jobs()]
        await intake.stop()
        return keys

    assert asyncio.run(start_and_stop()) == ["new"]
