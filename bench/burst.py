"""The burst: many signed Slack slash commands and GitHub ``deployment`` webhooks at once.

For each database (``chatops up`` on its SQLite default, and ``chatops up --database`` on a
throwaway PostgreSQL), in a fresh CHATOPS_HOME, ``--rounds`` times: ``--each`` slash commands and
``--each`` webhooks are sent together (one thread per request, released at the same instant),
spread over ten apps. The deploys cannot get far (the apps' repositories do not exist, so
checkout fails at once): only the way from request to flow run is measured:

- how many requests were answered 2xx, and how fast (median, p99, max; Slack and GitHub apart);
- how many of those became exactly one flow run (found in Prefect by the request's idempotency
  key), and how many runs are missing or doubled;
- seconds from the first request until the last run existed, and until the last run started;
- how many Slack users got their run link, in the answer or later on their ``response_url``.

Run it alone with ``bench/run.sh burst``; it writes results/burst.json (bench/results.py).
Standard library only, plus the project's test-bed PostgreSQL helper.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.results import Result
from bench.signed import SECRETS, ResponseSink, deployment_webhook, slash_command
from bench.system import FINAL, RUN_ID, BenchError, Up, http, ts, wait_for

APPS = 10
KEY_VAR = "BURST_SSH_KEY"
CREATED_TIMEOUT = 300.0
STARTED_TIMEOUT = 900.0


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
    error: str = ""

    @property
    def accepted(self) -> bool:
        """Slack acks with 200; GitHub with 202 when a run is queued (200 means ignored)."""
        return self.status == (202 if self.source == "github" else 200)


@dataclass
class Round:
    """What one burst did, as the report shows it."""

    database: str
    sent: int
    accepted: int
    errors: dict[str, int]  # status (or the exception) -> how many
    acks: dict[str, list[float]]  # source -> seconds, answered requests only
    runs: int = 0  # accepted requests with exactly one flow run
    missing: int = 0
    doubled: int = 0
    last_created: float | None = None  # seconds after the first request
    last_started: float | None = None
    slack_links: int = 0
    notes: list[str] = field(default_factory=list)


def config_yaml(work: Path) -> str:
    """Ten apps on one host that refuses SSH, cloned from a repository that does not exist."""
    lines = ["apps:"]
    for n in range(APPS):
        lines += [
            f"  burst{n}:",
            f"    repository: acme/burst{n}",
            f"    clone_url: {work / 'no-such-repository'}",
            "    default_environment: production",
            "    environments:",
            "      production:",
            "        hosts: [127.0.0.1:1]",
            "        ssh:",
            "          user: nobody",
            f"          private_key_env: {KEY_VAR}",
            "          connect_timeout: 1",
            "        deploy_path: /srv/burst",
            "        restart_command: 'true'",
        ]
    return "\n".join(lines) + "\n"


def requests(each: int, sink: ResponseSink, tag: str) -> list[Sent]:
    """``each`` slash commands and ``each`` webhooks, interleaved, every one for a new run."""
    made: list[Sent] = []
    base = 8_000_000 + int(time.time()) % 100_000 * 100
    for n in range(each):
        app = f"burst{n % APPS}"
        trigger = f"{time.time_ns()}.{n}.{tag}"
        body, headers = slash_command(
            f"deploy {app}@v{n} to production", f"U0BURST{n:03d}", sink.url(trigger), trigger
        )
        made.append(Sent(f"slack-{trigger}", "slack", "/slack/commands", body, headers))
        number = base + n
        body, headers = deployment_webhook(number, f"{n:040x}", "production", f"acme/{app}")
        key = f"github-deployment-{number}"
        made.append(Sent(key, "github", "/github/webhook", body, headers))
    return made


def fire(up: Up, burst: list[Sent]) -> float:
    """Send every request at the same instant; return the epoch of the release."""
    gate = threading.Barrier(len(burst) + 1)

    def one(item: Sent) -> None:
        gate.wait()
        started = time.monotonic()
        try:
            item.status, answer = http(
                "POST", f"{up.gateway}{item.path}", item.body, item.headers, timeout=30
            )
            item.answer = answer.decode(errors="replace")
        except OSError as exc:
            item.error = type(exc).__name__
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
        chunk = keys[start : start + 100]
        page = up.api_post(
            "/flow_runs/filter",
            {"flow_runs": {"idempotency_key": {"any_": chunk}}, "limit": 200},
        )
        for run in page:
            found.setdefault(run["idempotency_key"], []).append(run)
    return found


def one_round(up: Up, sink: ResponseSink, database: str, each: int, tag: str) -> Round:
    burst = requests(each, sink, tag)
    released = fire(up, burst)
    accepted = [r for r in burst if r.accepted]
    errors: dict[str, int] = {}
    for r in burst:
        if not r.accepted:
            what = str(r.status) if r.status is not None else r.error
            errors[what] = errors.get(what, 0) + 1
    result = Round(
        database=database,
        sent=len(burst),
        accepted=len(accepted),
        errors=errors,
        acks={
            source: [r.ack for r in burst if r.source == source and r.status and r.ack]
            for source in ("slack", "github")
        },
    )
    keys = [r.key for r in accepted]

    def all_created() -> dict[str, list[dict]] | None:
        found = runs_of(up, keys)
        return found if len(found) == len(keys) else None

    try:
        found = wait_for("a run for every accepted request", all_created, CREATED_TIMEOUT, 1.0)
    except BenchError as exc:
        result.notes.append(str(exc))
        found = runs_of(up, keys)
    result.runs = sum(1 for k in keys if len(found.get(k, [])) == 1)
    result.missing = sum(1 for k in keys if k not in found)
    result.doubled = sum(1 for k in keys if len(found.get(k, [])) > 1)
    created = [ts(run["created"]) for runs in found.values() for run in runs]
    if created and not result.missing:
        result.last_created = max(c for c in created if c) - released

    ids = [run["id"] for runs in found.values() for run in runs]

    def all_started() -> list[dict] | None:
        runs = [up.flow_run(i) for i in ids]
        going = [r for r in runs if r.get("start_time") or state(r) in FINAL]
        return runs if len(going) == len(runs) else None

    try:
        runs = wait_for("every run to start", all_started, STARTED_TIMEOUT, 2.0)
        starts = [ts(r.get("start_time")) for r in runs]
        if all(starts) and not result.missing:
            result.last_started = max(s for s in starts if s) - released
    except BenchError as exc:
        result.notes.append(str(exc))
    # The next round (or the next database) starts on an idle engine.
    try:
        wait_for(
            "every run to end", lambda: all(state(up.flow_run(i)) in FINAL for i in ids), 600, 2
        )
    except BenchError as exc:
        result.notes.append(str(exc))
    # The link comes in the ack when the run exists by then, else later on the response_url.
    linked = {path for _, path, body in sink.messages if RUN_ID.search(body)}
    result.slack_links = sum(
        1
        for r in accepted
        if r.source == "slack"
        and (RUN_ID.search(r.answer) or any(p.endswith(r.key[6:]) for p in linked))
    )
    return result


def state(run: dict) -> str | None:
    return (run.get("state") or {}).get("type")


def measure(
    result: Result, work: Path, databases: list[str], each: int, rounds: int, log: Any = print
) -> None:
    """Every round on every database, into ``result``: its series, and each round's counts
    under ``raw``."""
    from tests.testbed.hosts import make_ssh_key
    from tests.testbed.postgres import throwaway_postgres

    key = make_ssh_key(work / "burst-key")
    for database in databases:
        with ExitStack() as stack:
            args: tuple[str, ...] = ()
            if database == "postgresql":
                args = ("--database", stack.enter_context(throwaway_postgres()).url)
            up = Up(work / f"burst-{database}" / "home", extra_env=SECRETS, args=args)
            stack.callback(up.stop)
            sink = ResponseSink()
            stack.callback(sink.close)
            served = up.start()["deployments"]
            log(f"burst on {database}: chatops up served its deployments after {served:.1f} s")
            configure(up, key.private_text)
            for number in range(rounds):
                done = one_round(up, sink, database, each, f"{database}{number}")
                keep(result, done)
                log(f"burst on {database}, round {number + 1}: {asdict(done)}")


def keep(result: Result, done: Round) -> None:
    """One round's numbers as rows of the burst's tables."""
    acks = "Answer to each request (s)"
    for source, name in (("slack", "Slack slash command"), ("github", "GitHub webhook")):
        for seconds in done.acks[source]:
            result.add(acks, f"{done.database}: {name}", seconds)
    runs = "Every request one run (requests per round)"
    result.add(runs, f"{done.database}: answered 2xx", done.accepted, unit="count")
    lost = done.sent - done.runs
    result.add(runs, f"{done.database}: without exactly one run", lost, unit="count")
    result.add(runs, f"{done.database}: Slack users given the run link", done.slack_links, "count")
    after = "Seconds after the burst was released"
    result.add(after, f"{done.database}: the last run created", done.last_created)
    result.add(after, f"{done.database}: the last run started", done.last_started)
    result.data["raw"].append(asdict(done))
    if lost:
        result.data["failures"].append(f"{done.database}: {lost} of {done.sent} without one run")


def configure(up: Up, private_key: str) -> None:
    """``chatops config apply`` the burst's apps; wait until the gateway knows them."""
    path = up.home.parent / "chatops.yaml"
    path.write_text(config_yaml(up.home.parent))
    applied = up.cli("config", "apply", str(path), env={KEY_VAR: private_key})
    if applied.rc != 0:
        raise BenchError(f"burst config apply failed:\n{applied.stdout}{applied.stderr}")
    wait_for("the gateway to see the burst apps", lambda: sees_apps(up), 60, 0.5)


def sees_apps(up: Up) -> bool:
    body = json.dumps({"text": f"where burst{APPS - 1}"}).encode()
    headers = {"Authorization": f"Bearer {up.token}", "Content-Type": "application/json"}
    status, answer = http("POST", f"{up.gateway}/cli/commands", body, headers)
    return status == 200 and "deploys to" in json.loads(answer).get("text", "")
