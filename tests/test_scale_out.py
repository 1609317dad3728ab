"""Scale-out, end to end: a Prefect server on PostgreSQL, two process workers, ten deploys at once.

What docs/scale-out.md sets up on three machines, on this one:

- PostgreSQL as a plain process (``tests/testbed/postgres.py``) and ``prefect server start`` on it,
  with filesystem lease storage;
- the ``chatops`` process work pool and the flows deployed from ``prefect.yaml``
  (``prefect --no-prompt deploy --all``);
- two ``prefect worker start --pool chatops`` processes, each with its own ``CHATOPS_HOME``
  (mirrors, work trees) as two machines would have, sharing one ``CHATOPS_ARTIFACT_CACHE``;
- ten apps (``shop1`` .. ``shop10``) of one repository, each with its own environment on the two
  test-bed hosts. Instead of ten Tomcats, each app's restart command serves its release
  directory with ``python3 -m http.server`` on its own port, so ``/REVISION`` is the health URL.

Ten ``run_deployment("deploy/chatops", ...)`` calls at once must all complete, on both workers,
with the commit built once: by one run on one worker, and taken from the shared cache by the
nine others, whichever worker ran them.

Every process this test starts (server, workers, the workers' flow-run processes) carries the
environment variable ``TEST_SCALE_OUT_RUN=<its state directory>``; teardown kills them and their
children, and a later run removes what a killed run left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import LogSort
from prefect.deployments import arun_deployment
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from adapters.net import free_port
from blocks import App, Environment
from tests.testbed.gitrepo import AppRepo
from tests.testbed.hosts import SshKey, TestHost
from tests.testbed.postgres import Postgres

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
BASE = Path("/tmp/chatops-scale-out")
MARK = "TEST_SCALE_OUT_RUN"  # builds never see it (allow-listed environment): found as descendants
APPS = [f"shop{n}" for n in range(1, 11)]
FIRST_PORT = 8101  # shopN serves on FIRST_PORT + N - 1 on every host
WORKERS = 2
WORKER_LIMIT = 5  # runs at once per worker: ten runs need both workers
HEARTBEAT_SECONDS = "5"
"""The workers' runs say they are alive this often (docs/scale-out.md: 30 s), so a dead one is
found within 10 s of its last heartbeat, not 60 (tests/test_dead_runs_e2e.py)."""
DEPLOYS_SECONDS = 240  # all ten runs final within this
API_AUTH = "admin:scale-out-test"  # the server wants it from every client, as in the docs
_serial = itertools.count(1)

# A launcher that gives the command default SIGINT/SIGTERM handling, then execs it. A worker that
# inherits SIGINT ignored (a background job of a shell script) ignores SIGTERM too.
_EXEC_WITH_DEFAULT_SIGNALS = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


# --- processes ----------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def run_processes(state: Path) -> set[int]:
    """Live processes of this test run: those carrying its mark, and their descendants (the
    builds and git commands of a flow run, which get a trimmed environment)."""
    needle = f"{MARK}={state}\0".encode()
    parents = _parents()
    found = set()
    for pid in parents:
        with contextlib.suppress(OSError):
            if pid != os.getpid() and needle in Path(f"/proc/{pid}/environ").read_bytes():
                found.add(pid)
    while True:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        if not children:
            return {pid for pid in found if _alive(pid)}
        found |= children


def kill_test_processes(state: Path) -> None:
    """Stop (SIGSTOP: no more forks) every process of this test run until the set is stable,
    then SIGKILL them all and wait until they are gone."""
    stopped: set[int] = set()
    for _ in range(20):
        new = run_processes(state) - stopped
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.1)


def _owner_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _alive(pid) and (b"python" in cmdline or b"pytest" in cmdline)


def preclean() -> None:
    """Remove what killed runs of this test left: their processes, then their directories."""
    for state in sorted(BASE.glob("run-*")) if BASE.is_dir() else []:
        match = re.match(r"^run-(\d+)-\d+$", state.name)
        if match and (int(match.group(1)) == os.getpid() or _owner_alive(int(match.group(1)))):
            continue
        kill_test_processes(state)
        shutil.rmtree(state, ignore_errors=True)


def base_env(state: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Prefect or chatops settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
    env.update(
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
        **{MARK: str(state)},
    )
    env.update(extra)
    return env


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, default signal handling, output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_DEFAULT_SIGNALS, *cmd],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], seconds: float = 20) -> None:
    """SIGTERM, then SIGKILL its process group if it is not gone within ``seconds``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"({path} missing)"
    return f"--- {path.name}\n" + "\n".join(text)


def prefect_cli(env: dict[str, str], *args: str, cwd: Path, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr}"
    return proc.stdout


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def state() -> Iterator[Path]:
    """This test run's directory (server home, worker homes, shared cache, logs)."""
    BASE.mkdir(exist_ok=True)
    preclean()
    directory = BASE / f"run-{os.getpid()}-{next(_serial)}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    try:
        yield directory
    finally:
        kill_test_processes(directory)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Server:
    api_url: str
    log: Path


@pytest.fixture
def prefect_on_postgres(postgres: Postgres, state: Path) -> Iterator[Server]:
    """``prefect server start`` on the throwaway PostgreSQL, configured as docs/scale-out.md says
    (filesystem lease storage, a password on the API); this process's client points at it."""
    port = free_port()
    log = state / "server.log"
    env = base_env(
        state,
        PREFECT_HOME=str(state / "server"),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=postgres.url,
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect.server.concurrency.lease_storage.filesystem",
        PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="5",
        PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="5",
        PREFECT_SERVER_API_AUTH_STRING=API_AUTH,
    )
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    server = spawn([*cmd, "--port", str(port)], env, log, cwd=state)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"Prefect server exited\n{tail(log)}"
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if httpx.get(f"{api}/health", timeout=2).json() is True:
                    break
            assert time.monotonic() < deadline, f"Prefect server not healthy in 120 s\n{tail(log)}"
            time.sleep(0.2)
        with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: API_AUTH}):
            yield Server(api_url=api, log=log)
    finally:
        stop(server)


@dataclass(frozen=True)
class Worker:
    name: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def workers(prefect_on_postgres: Server, state: Path) -> Iterator[list[Worker]]:
    """The ``chatops`` pool, the flows deployed from prefect.yaml, two workers polling it."""
    client_env = base_env(
        state,
        PREFECT_API_URL=prefect_on_postgres.api_url,
        PREFECT_API_AUTH_STRING=API_AUTH,
        PREFECT_HOME=str(state / "client"),
        CHATOPS_CODE_DIR=str(ROOT),
    )
    prefect_cli(client_env, "work-pool", "create", "chatops", "--type", "process", cwd=state)
    prefect_cli(client_env, "--no-prompt", "deploy", "--all", cwd=ROOT)

    shared_cache = state / "artifact-cache"
    started: list[Worker] = []
    try:
        for n in range(1, WORKERS + 1):
            name = f"worker-{n}"
            home = state / name
            home.mkdir()
            env = base_env(
                state,
                PREFECT_API_URL=prefect_on_postgres.api_url,
                PREFECT_API_AUTH_STRING=API_AUTH,
                PREFECT_HOME=str(home / "prefect"),
                PREFECT_WORKER_QUERY_SECONDS="1",
                CHATOPS_HEARTBEAT_SECONDS=HEARTBEAT_SECONDS,
                CHATOPS_HOME=str(home / "chatops"),
                CHATOPS_ARTIFACT_CACHE=str(shared_cache),
            )
            cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "chatops"]
            cmd += ["--name", name, "--limit", str(WORKER_LIMIT)]
            log = state / f"{name}.log"
            started.append(Worker(name, home / "chatops", log, spawn(cmd, env, log, cwd=home)))
        wait_online(started)
        yield started
    finally:
        for worker in started:
            stop(worker.process)


def wait_online(workers: list[Worker], seconds: float = 90) -> None:
    names = {w.name for w in workers}
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            for w in workers:
                assert w.process.poll() is None, f"{w.name} exited\n{tail(w.log)}"
            online = {
                w.name
                for w in client.read_workers_for_work_pool("chatops")
                if str(w.status).upper().endswith("ONLINE")
            }
            if names <= online:
                return
            assert time.monotonic() < deadline, "workers not online:\n" + "\n".join(
                tail(w.log) for w in workers
            )
            time.sleep(0.3)


# --- configuration ------------------------------------------------------------------------------


def port_of(app: str) -> int:
    return FIRST_PORT + APPS.index(app)


def restart_command(app: str) -> str:
    """Serve the release directory (``current``, the command's working directory) on the app's
    port; stop the server this command started last time first."""
    d, port = f"/srv/app/{app}", port_of(app)
    return (
        f"p=$(cat {d}/http.pid 2>/dev/null) && tr '\\0' ' ' </proc/$p/cmdline 2>/dev/null"
        f" | grep -q 'http.server {port}' && kill $p; "
        f"setsid /usr/bin/python3 -m http.server {port} --bind 0.0.0.0"
        f" </dev/null >{d}/http.log 2>&1 & echo $! > {d}/http.pid"
    )


def save_apps(repo: AppRepo, hosts: list[TestHost], ssh_key: SshKey) -> None:
    """Ten apps of one repository, each with a ``staging`` environment on the hosts."""
    for app in APPS:
        App(
            repository="acme/shop",
            clone_url=repo.url,
            default_ref="main",
            default_environment="staging",
            environments=["staging"],
        ).save(app, overwrite=True)
        Environment(
            hosts=[h.address for h in hosts],
            ssh_user="root",
            ssh_private_key=ssh_key.private_text,
            known_hosts=[h.known_hosts_line for h in hosts],
            connect_timeout=10,  # the default: ten deploys at once load a 2-core machine
            command_timeout=60,
            deploy_path=f"/srv/app/{app}",
            restart_command=restart_command(app),
            health_url=f"http://{{host}}:{port_of(app)}/REVISION",
            health_timeout=60,
            batch_size=1,
        ).save(f"{app}-staging", overwrite=True)


# --- reading the runs ---------------------------------------------------------------------------


async def start_deploys(ref: str) -> dict[str, UUID]:
    """Ten deploys at once, as ten gateways' requests would arrive."""
    runs = await asyncio.gather(
        *(
            arun_deployment(
                "deploy/chatops",
                parameters={"app": app, "environment": "staging", "ref": ref},
                timeout=0,
            )
            for app in APPS
        )
    )
    return {app: run.id for app, run in zip(APPS, runs, strict=True)}


def wait_all_final(ids: dict[str, UUID], workers: list[Worker], seconds: float) -> list[FlowRun]:
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(i) for i in ids.values()]
            if all(r.state and r.state.is_final() for r in runs):
                return runs
            if time.monotonic() >= deadline:
                states = {app: r.state_name for app, r in zip(ids, runs, strict=True)}
                logs = "\n".join(tail(w.log) for w in workers)
                raise AssertionError(f"runs not over after {seconds} s: {states}\n{logs}")
            time.sleep(1)


def run_logs(run_id: UUID) -> list[str]:
    messages: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                limit=200,
                offset=len(messages),
                sort=LogSort.TIMESTAMP_ASC,
            )
            messages += [log.message for log in page]
            if len(page) < 200:
                return messages


BUILT = re.compile(r"^Built \S+ \(\d+ bytes\)$")


def build_outcome(messages: list[str]) -> str | None:
    """How a run got its artifact, from its log: ``built`` it, ``waited`` for another run's
    build (the lock), found it ``cached``; None while its build lines have not arrived."""
    for message in messages:
        if BUILT.match(message):
            return "built"
        if message.startswith("Built meanwhile by another run"):
            return "waited"
        if message.startswith("Already built "):
            return "cached"
    return None


def build_outcomes(ids: dict[str, UUID], seconds: float = 30) -> dict[str, str | None]:
    """Each run's build outcome; logs reach the API in batches, so wait for them a little."""
    deadline = time.monotonic() + seconds
    while True:
        outcomes = {app: build_outcome(run_logs(i)) for app, i in ids.items()}
        if None not in outcomes.values() or time.monotonic() >= deadline:
            return outcomes
        time.sleep(1)


def submitted_by(workers: list[Worker]) -> dict[str, str]:
    """Flow run id -> the worker that ran it, from the workers' own logs. Both workers may try
    to submit a run; the one the server refuses logs "Aborted submission"."""
    found = {}
    for w in workers:
        log = w.log.read_text()
        tried = re.findall(rf"Worker '{w.name}' submitting flow run '([0-9a-f-]+)'", log)
        aborted = set(re.findall(r"Aborted submission of flow run '([0-9a-f-]+)'", log))
        found.update({run_id: w.name for run_id in tried if run_id not in aborted})
    return found


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.timeout(420)
@pytest.mark.parametrize("deploy_hosts", [2], indirect=True)
def test_ten_deploys_at_once_on_two_workers_build_once(
    workers: list[Worker],
    state: Path,
    deploy_hosts: list[TestHost],
    app_repo: AppRepo,
    ssh_key: SshKey,
) -> None:
    for host in deploy_hosts:  # the hosts serve with the machine's own python3
        assert host.run("/usr/bin/python3 -c 'import http.server'").returncode == 0
    save_apps(app_repo, deploy_hosts, ssh_key)

    started = time.monotonic()
    ids = asyncio.run(start_deploys("v1"))
    runs = wait_all_final(ids, workers, DEPLOYS_SECONDS)
    print(f"ten deploys took {time.monotonic() - started:.1f} s")

    by_app = dict(zip(APPS, runs, strict=True))
    failed = {
        app: (r.state_name, r.state.message)
        for app, r in by_app.items()
        if not r.state.is_completed()
    }
    assert not failed, f"not completed: {failed}\n" + "\n".join(tail(w.log) for w in workers)

    # Every host serves v1 for every app, on the app's own port.
    sha = app_repo.v1
    for host in deploy_hosts:
        for app in APPS:
            status, body = host.http_get("/REVISION", port=port_of(app))
            assert (status, body.strip()) == (200, sha), (host, app)
            assert (host.root / app / "current" / "REVISION").read_text().strip() == sha

    # Both workers took runs: the label each worker gives the runs it submits, and its log.
    ran_on = {app: r.labels.get("prefect.worker.name") for app, r in by_app.items()}
    logged = submitted_by(workers)
    assert ran_on == {app: logged.get(str(ids[app])) for app in APPS}, (ran_on, logged)
    assert set(ran_on.values()) == {w.name for w in workers}, ran_on

    # Built once, by one run on one worker; the nine others, on both workers, used that build:
    # they waited for it (the build lock in the shared cache) or found it there.
    outcomes = build_outcomes(ids)
    print(f"workers: {ran_on}\nbuilds: {outcomes}")
    built = [app for app in APPS if outcomes[app] == "built"]
    assert len(built) == 1, outcomes
    assert all(outcomes[app] in ("waited", "cached") for app in APPS if app not in built), outcomes
    builder = ran_on[built[0]]
    assert any(ran_on[app] != builder for app in APPS)  # the other worker took runs, built none

    # One artifact folder for the commit, in the shared cache; none on the workers themselves.
    cache = state / "artifact-cache"
    folders = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert [p.name.split("-")[0] for p in folders] == [sha], folders
    assert [p.name for p in folders[0].iterdir()] == ["demo.war"]
    assert not [p for p in cache.iterdir() if p.is_dir() and p.name.startswith(".")]  # no staging
    for w in workers:  # separate machines: own mirrors, no private artifact cache
        assert list((w.home / "mirrors").iterdir()), w.name
        assert not (w.home / "artifacts").exists(), w.name
