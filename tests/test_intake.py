"""The intake's store keeps what it must and gives back what it need not keep."""

import asyncio
import time
from pathlib import Path

from chatops.intake import CREATE_AT_ONCE, Busy, Intake, ReplyTo, Started, Store
from chatops.request import Run


def _finished(store: Store, key: str, state: str = "started") -> int:
    job = store.add(key, "run", {"deployment": "deploy/chatops", "key": key}, ReplyTo())
    store.update(job, state=state, run_id=f"run-{key}")
    return job


def test_old_finished_requests_are_deleted_and_the_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "intake.db"
    store = Store(path)
    padding = "x" * 8000  # large rows, so that the freed space is plain to see
    for n in range(140):
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

    assert deleted == 141  # every finished job last changed before the cutoff
    kept = {job.key for job in store.jobs()}
    assert kept == {"waiting", "after-cutoff"}  # queued jobs are never deleted
    assert store.ticket(recent).run_id == "run-after-cutoff"
    after = path.stat().st_size
    print(f"measured: intake.db {before} bytes before, {after} after pruning 141 requests")
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


class _Slow:
    """Creates runs after a pause, noting the order, and how many it was asked for at once."""

    def __init__(self, pause: float, busy_once: set[str] = frozenset()) -> None:
        self.pause = pause
        self.busy_once = set(busy_once)
        self.created: list[str] = []
        self.asked = 0
        self.most_at_once = 0

    async def create(self, run: Run) -> Started:
        self.asked += 1
        self.most_at_once = max(self.most_at_once, self.asked)
        try:
            await asyncio.sleep(self.pause)
            if run.key in self.busy_once:
                self.busy_once.discard(run.key)
                raise Busy("Prefect answered 503: database is locked")
            self.created.append(run.key)
            return Started(f"run-{run.key}", None)
        finally:
            self.asked -= 1


def _request(app: str, n: int) -> Run:
    parameters = {"app": app, "environment": "staging", "ref": f"v{n}"}
    return Run("deploy/chatops", parameters, f"{app}@v{n} → staging", key=f"{app}-{n}")


def _dispatch_all(tmp_path: Path, creator: _Slow, runs: list[Run], seconds: float) -> list[str]:
    """Submit ``runs`` at once, dispatch until each started (at most ``seconds``); the states."""

    async def go() -> list[str]:
        intake = Intake(tmp_path / "intake.db", creator, _Quiet())
        tickets = [await intake.submit(run, ReplyTo()) for run in runs]
        intake.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            states = [(await intake.ticket(t.id)).state for t in tickets]
            if all(state == "started" for state in states):
                break
            await asyncio.sleep(0.05)
        await intake.stop()
        return states

    return asyncio.run(go())


def test_runs_of_different_environments_are_created_at_the_same_time_each_in_order(
    tmp_path: Path,
) -> None:
    apps = [f"app{a}" for a in range(12)]
    runs = [_request(app, n) for n in range(3) for app in apps]  # interleaved, as they came
    creator = _Slow(pause=0.2)
    started = time.monotonic()
    states = _dispatch_all(tmp_path, creator, runs, seconds=20)
    took = time.monotonic() - started
    print(
        f"measured: 36 runs at 0.2 s each created in {took:.2f} s, {creator.most_at_once} at once"
    )
    assert states == ["started"] * 36
    assert sorted(creator.created) == sorted(run.key for run in runs)  # each exactly once
    assert creator.most_at_once == CREATE_AT_ONCE  # bounded, and used
    for app in apps:
        assert [k for k in creator.created if k.startswith(f"{app}-")] == [
            f"{app}-0",
            f"{app}-1",
            f"{app}-2",
        ]
    assert took < 36 * 0.2 / 2  # one at a time would take 7.2 s


def test_a_request_prefect_was_too_busy_for_holds_back_the_later_ones_of_its_environment(
    tmp_path: Path,
) -> None:
    runs = [_request("shop", n) for n in range(3)] + [_request("blog", 0)]
    creator = _Slow(pause=0.01, busy_once={"shop-0"})
    states = _dispatch_all(tmp_path, creator, runs, seconds=10)
    assert states == ["started"] * 4
    shop = [key for key in creator.created if key.startswith("shop-")]
    assert shop == ["shop-0", "shop-1", "shop-2"]  # not shop-1 first while shop-0 waited
    assert creator.created.index("blog-0") < creator.created.index("shop-0")  # not held back


def test_a_request_for_one_environment_does_not_wait_behind_a_long_queue_for_another(
    tmp_path: Path,
) -> None:
    runs = [_request("shop", n) for n in range(20)] + [_request("blog", 0)]
    creator = _Slow(pause=0.05)
    states = _dispatch_all(tmp_path, creator, runs, seconds=20)
    assert states == ["started"] * 21
    assert creator.created.index("blog-0") <= 1  # beside shop-0, not after shop-19
    assert [k for k in creator.created if k.startswith("shop-")] == [f"shop-{n}" for n in range(20)]
