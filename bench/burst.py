"""The burst: many signed Slack slash commands and GitHub ``deployment`` webhooks at once.

For each database (``embedded``: ``chatops up`` on its default, a PostgreSQL of its own;
``sqlite``: ``chatops up --database sqlite``; ``postgresql``: ``chatops up --database`` on a
throwaway PostgreSQL), in a fresh CHATOPS_HOME, ``--burst-rounds`` times: ``--burst-each`` slash
commands and as many webhooks are sent together (one thread per request, released at the same
instant), spread over ten apps. The deploys cannot get far (the apps' repositories do not exist,
so checkout fails at once): only the way from request to flow run is measured:

- how fast each request was answered, Slack and GitHub apart;
- how many accepted requests did not become exactly one flow run (found in Prefect by the
  request's idempotency key: missing or doubled);
- seconds from the release until the last run existed, and until the last run started;
- how many Slack users got their run link, in the answer or later on their ``response_url``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import Result
from bench.signed import SECRETS, ResponseSink, deployment_webhook, slash_command
from bench.system import FINAL, RUN_ID, BenchError, Up, http, state, ts, wait_for

APPS = 10
WHERE = f"where burst{APPS - 1}"  # the gateway knows the apps when it knows the last one
KEY_VAR = "BURST_SSH_KEY"
ACKS, RUNS = "Answer to each request (s)", "Requests per round"
AFTER = "Seconds after the burst was released"
CPU = "CPU per run, from the burst until every run ended (CPU-s)"


@dataclass
class Sent:
    """One request of the burst and its answer."""

    key: str  # the intake's idempotency key for it
    source: str  # slack or github
    path: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    ack: float | None = None  # seconds until the answer
    answer: str = ""

    @property
    def accepted(self) -> bool:
        """Slack acks with 200; GitHub with 202 when a run is queued (200 means ignored)."""
        return self.status == (202 if self.source == "github" else 200)


def config(work: Path) -> dict[str, Any]:
    """Ten apps on one host that refuses SSH, cloned from a repository that does not exist."""
    ssh = {"user": "nobody", "private_key_env": KEY_VAR, "connect_timeout": 1}
    env = {"hosts": ["127.0.0.1:1"], "ssh": ssh, "deploy_path": "/srv/burst"}
    app = {"clone_url": str(work / "no-such-repository"), "default_environment": "production"}
    app["environments"] = {"production": {**env, "restart_command": "true"}}
    return {"apps": {f"burst{n}": {**app, "repository": f"acme/burst{n}"} for n in range(APPS)}}


def requests(each: int, sink: ResponseSink, tag: str) -> list[Sent]:
    """``each`` slash commands and ``each`` webhooks, interleaved, every one for a new run."""
    made: list[Sent] = []
    base = 8_000_000 + int(time.time()) % 100_000 * 100
    for n in range(each):
        app, trigger = f"burst{n % APPS}", f"{time.time_ns()}.{n}.{tag}"
        text, user = f"deploy {app}@v{n} to production", f"U0BURST{n:03d}"
        body, headers = slash_command(text, user, sink.url(trigger), trigger)
        made.append(Sent(f"slack-{trigger}", "slack", "/slack/commands", body, headers))
        body, headers = deployment_webhook(base + n, f"{n:040x}", "production", f"acme/{app}")
        key = f"github-deployment-{base + n}"
        made.append(Sent(key, "github", "/github/webhook", body, headers))
    return made


def fire(up: Up, burst: list[Sent]) -> float:
    """Send every request at the same instant; return the epoch of the release."""
    gate = threading.Barrier(len(burst) + 1)

    def one(item: Sent) -> None:
        gate.wait()
        started = time.monotonic()
        with contextlib.suppress(OSError):
            item.status, answer = http("POST", up.gateway + item.path, item.body, item.headers, 30)
            item.answer = answer.decode(errors="replace")
        item.ack = time.monotonic() - started

    with ThreadPoolExecutor(max_workers=len(burst)) as pool:
        for item in burst:
            pool.submit(one, item)
        gate.wait()
        released = time.time()
    return released


def runs_of(up: Up, keys: list[str]) -> dict[str, list[dict]]:
    """The flow runs of each idempotency key."""
    found: dict[str, list[dict]] = {}
    for start in range(0, len(keys), 100):
        query = {"flow_runs": {"idempotency_key": {"any_": keys[start : start + 100]}}}
        for run in up.api_post("/flow_runs/filter", {**query, "limit": 200}):
            found.setdefault(run["idempotency_key"], []).append(run)
    return found


def one_round(result: Result, up: Up, sink: ResponseSink, db: str, each: int, tag: str) -> None:
    """One burst, into ``result``'s rows (and its counts under ``raw``)."""
    burst = requests(each, sink, tag)
    cpu_before = up.services_cpu()
    released = fire(up, burst)
    for source, name in (("slack", "Slack slash command"), ("github", "GitHub webhook")):
        for item in burst:
            if item.source == source and item.status:
                result.add(ACKS, f"{db}: {name}", item.ack)
    keys = [r.key for r in burst if r.accepted]
    with contextlib.suppress(BenchError):
        wait_for("a run for every request", lambda: len(runs_of(up, keys)) == len(keys), 300, 1)
    found = runs_of(up, keys)
    lost = sum(1 for k in keys if len(found.get(k, [])) != 1) + len(burst) - len(keys)
    created = [ts(run["created"]) or 0 for runs in found.values() for run in runs]
    started = None

    def every_run() -> list[dict]:  # one request per 100 runs, not one per run every 2 s
        return [run for runs in runs_of(up, keys).values() for run in runs]

    def all_started() -> list[dict] | None:
        runs = every_run()
        going = [r for r in runs if r.get("start_time") or state(r) in FINAL]
        return runs if len(going) == len(runs) else None

    with contextlib.suppress(BenchError):
        runs = wait_for("every run to start", all_started, 900, 2.0)
        starts = [ts(r.get("start_time")) for r in runs]
        started = max(starts) - released if all(starts) and len(found) == len(keys) else None
    # The next round (or the next database) starts on an idle engine.
    ended = lambda: all(state(run) in FINAL for run in every_run())  # noqa: E731
    with contextlib.suppress(BenchError):
        wait_for("every run to end", ended, 600, 2)
    for name, spent in up.services_cpu().items():
        result.add(CPU, f"{db}: {name}", (spent - cpu_before[name]) / (len(keys) or 1), "CPU-s")
    # The link comes in the ack when the run exists by then, else later on the response_url.
    linked = {path for _, path, body in sink.messages if RUN_ID.search(body)}
    slack = [r for r in burst if r.source == "slack" and r.accepted]
    got = lambda r: RUN_ID.search(r.answer) or any(p.endswith(r.key[6:]) for p in linked)  # noqa: E731
    links = sum(1 for r in slack if got(r))
    counts = {
        f"answered 2xx (of {len(burst)})": len(keys),
        f"without exactly one run (of {len(burst)})": lost,
        f"Slack users given their run link (of {len(slack)})": links,
    }
    for name, count in counts.items():
        result.add(RUNS, f"{db}: {name}", count, "count")
    if len(found) == len(keys):
        result.add(AFTER, f"{db}: the last run created", max(created) - released)
    result.add(AFTER, f"{db}: the last run started", started)
    result.data["raw"].append({"database": db, "sent": len(burst), **counts, "started": started})
    if lost:
        result.data["failures"].append(f"{db}: {lost} of {len(burst)} requests without one run")


def measure(result: Result, work: Path, databases: list[str], each: int, rounds: int, log) -> None:
    """Every round on every database, each database on a fresh ``chatops up``."""
    from tests.testbed.hosts import make_ssh_key
    from tests.testbed.postgres import throwaway_postgres

    key = make_ssh_key(work / "burst-key")
    for db in databases:
        with contextlib.ExitStack() as stack:
            args: tuple[str, ...] = ()  # embedded: chatops up's default
            if db == "sqlite":
                args = ("--database", "sqlite")
            if db == "postgresql":
                args = ("--database", stack.enter_context(throwaway_postgres()).url)
            up = Up(work / f"burst-{db}" / "home", extra_env=SECRETS, args=args)
            stack.callback(up.stop)
            sink = ResponseSink()
            stack.callback(sink.close)
            served = up.start()["deployments"]
            log(f"burst on {db}: chatops up served its deployments after {served:.1f} s")
            up.apply_config(config(up.home.parent), {KEY_VAR: key.private_text})
            wait_for("the gateway to see the apps", lambda u=up: "deploys to" in u.ask(WHERE), 60)
            for number in range(rounds):
                one_round(result, up, sink, db, each, f"{db}{number}")
                log(f"burst on {db}, round {number + 1}: {result.data['raw'][-1]}")
