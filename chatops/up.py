"""``chatops up``: the whole system on one machine, on embedded defaults.

It starts, as child processes sharing one environment:

1. a Prefect server on a PostgreSQL server of its own under ``$CHATOPS_HOME/postgres``
   (:mod:`chatops.postgres`, started first and stopped last), on SQLite under
   ``$CHATOPS_HOME/prefect`` with ``--database sqlite``, or on an external PostgreSQL with
   ``--database postgresql://…`` (or ``CHATOPS_DATABASE_URL``); skipped when
   ``PREFECT_API_URL`` already points at a server. A home whose data is in SQLite from before
   PostgreSQL was the default is not moved silently: ``chatops up`` says what to choose.
   Concurrency leases are kept on disk, so a restart does not forget who holds an environment.
   Its API wants a credential from every client (``PREFECT_SERVER_API_AUTH_STRING``), made on
   first start and kept in ``$CHATOPS_HOME/secrets/prefect-api-auth`` (mode 0600); the runner and
   gateway get it as ``PREFECT_API_AUTH_STRING``, and it is the password of the UI. With an
   external server, the ``PREFECT_API_AUTH_STRING`` of the environment is used as it is;
2. the runner that executes deploys (:mod:`chatops.runner`);
3. the HTTP gateway for Slack, GitHub and the CLI (:mod:`chatops.gateway`).

Meanwhile it creates or updates, once the API answers, Prefect's automation that crashes and
reports, through the gateway, a deploy or rollback that stopped sending heartbeats
(:mod:`chatops.dead_runs`; the runner's runs send one every ``CHATOPS_HEARTBEAT_SECONDS``).
Then it records where it runs in ``$CHATOPS_HOME/up.json`` (the CLI finds it there) and watches:
a child that dies is started again (the others keep running). Ctrl-C or SIGTERM stops them in
order: the gateway first (no new requests), then the runner, which lets a deploy in flight
finish its batch and roll back, then the server. If ``chatops up`` itself is killed, its children
go with it (:mod:`chatops.lifeline`): the gateway and server get SIGTERM, the runner and every
deploy it runs SIGKILL, so nothing acts on hosts unsupervised; the next start reports their runs.
"""

import base64
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from adapters.home import home
from adapters.net import direct, probe
from adapters.run_signing import signing_key
from chatops.cli.server import PREFECT_API_AUTH, write_up_file
from chatops.lifeline import die_with_parent
from chatops.postgres import DatabaseError, EmbeddedPostgres, sqlite_database, sqlite_home_advice
from chatops.settings import DEAD_RUN_SECRET, DEPLOYMENTS, stop_grace_seconds
from model.errors import DeployError

SERVER_START_SECONDS = 120
RUNNER_STOP_MARGIN = 30.0
"""What the runner needs beyond its runs' grace to record them as ended and exit."""
STOP_SECONDS = {
    "gateway": 10.0,
    "runner": stop_grace_seconds() + RUNNER_STOP_MARGIN,
    "server": 15.0,
    "database": 15.0,
}
"""How long each service has to stop when asked before it is killed (the runner gives the
deploys in flight ``CHATOPS_STOP_GRACE_SECONDS`` to finish their batch)."""
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
EMBEDDED = "embedded"
"""``--database embedded`` (the default): PostgreSQL of our own (:mod:`chatops.postgres`)."""
SQLITE = "sqlite"
"""``--database sqlite``: the Prefect server's own SQLite file under ``$CHATOPS_HOME/prefect``."""


class StartupError(DeployError, RuntimeError):
    """A service did not come up."""


@dataclass
class Service:
    """One supervised child process."""

    name: str
    argv: list[str]
    own_env: dict[str, str] = field(default_factory=dict)
    """Variables only this service sees (the server's own credential)."""
    process: subprocess.Popen | None = None
    restarts: int = 0
    started: float = field(default=0.0)
    terminating: bool = False
    death_signal: int = signal.SIGTERM
    """What it gets if ``chatops up`` dies: SIGTERM lets it stop cleanly, SIGKILL (the runner)
    stops it now, where a clean stop would wait for deploys nobody supervises any more."""
    stop_signal: int = signal.SIGTERM
    """What asks it to stop (PostgreSQL: SIGINT, a fast shutdown that does not wait for its
    clients to leave)."""

    def start(self, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env={**env, **self.own_env},
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(_child_setup, self.death_signal),
        )
        self.started = time.monotonic()
        self.terminating = False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Ask it to stop (its ``stop_signal``, once); :meth:`stop` waits for it."""
        if self.alive() and not self.terminating:
            assert self.process is not None
            self.process.send_signal(self.stop_signal)
            self.terminating = True

    def stop(self) -> None:
        """Its ``stop_signal``, wait its grace period, then SIGKILL."""
        if not self.alive():
            return
        assert self.process is not None
        self.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS[self.name])
        except subprocess.TimeoutExpired:
            print(f"chatops: {self.name} did not stop in time; killing it", flush=True)
            self.process.kill()
            self.process.wait()


def _child_setup(death_signal: int) -> None:
    """In the child: its own process group (a terminal's Ctrl-C reaches ``chatops up`` alone,
    which stops the children in order), default SIGINT, and ``death_signal`` when ``chatops up``
    dies."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    die_with_parent(death_signal)


def database_url(url: str) -> str:
    """A PostgreSQL URL as Prefect's server wants it (asyncpg driver)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise StartupError(
        f"--database takes {EMBEDDED}, {SQLITE} or a postgresql:// URL, "
        f"not {url.split(':', 1)[0]}:…"
    )


def chosen_database(database: str | None) -> str:
    """``--database``, else ``CHATOPS_DATABASE_URL``, else :data:`EMBEDDED`: "embedded",
    "sqlite" or an external server's URL (asyncpg driver)."""
    choice = database or os.environ.get("CHATOPS_DATABASE_URL") or EMBEDDED
    return choice if choice in (EMBEDDED, SQLITE) else database_url(choice)


def embedded_database(prefect_home: Path, asked: bool) -> EmbeddedPostgres:
    """The PostgreSQL of this home, ready to start: a leftover server stopped, the cluster made
    on first use. A home whose data is in SQLite is refused with what to do unless the
    embedded server was ``asked`` for by name."""
    database = EmbeddedPostgres.of(home())
    old = sqlite_database(prefect_home)
    if old is not None and not asked and not database.exists():
        raise DatabaseError(sqlite_home_advice(home(), old))
    database.prepare(up_pid=_recorded_pid())
    return database


def base_environment(api_url: str, database: str | None, api_auth: str = "") -> dict[str, str]:
    """What every service sees; ``api_auth`` is the credential of a server we start (an external
    server's is the ``PREFECT_API_AUTH_STRING`` already set)."""
    env = dict(os.environ)
    state = home().ensure()  # mode 0700 before anything is written there: builds cannot read it
    if api_auth:
        env["PREFECT_API_AUTH_STRING"] = api_auth
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=env.get("PREFECT_HOME", str(state.prefect)),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=env.get(
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
            "prefect.server.concurrency.lease_storage.filesystem",
        ),
        # A dead deploy's slot frees within a minute or so (leases are kept on disk, so a server
        # restart does not forget them), and a waiting deploy notices within 5 s.
        PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="5",
        PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="5",
        CHATOPS_HOME=str(state.root),
        # The gateway signs the runs it starts and the runner's flows check it (one key).
        CHATOPS_RUN_SIGNING_KEY=signing_key(create=True),
    )
    home().secret(DEAD_RUN_SECRET, create=True)  # the gateway reads it when it starts
    if database and database not in (EMBEDDED, SQLITE):
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url(database)
    return env


def refuse_taken_port(host: str, port: int) -> None:
    """Fail at once if something already listens where the server should (it would answer our
    health checks and take our runs)."""
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex((host, port)) == 0:
            raise StartupError(
                f"port {port} on {host} is in use already (another chatops up or Prefect "
                "server?): stop it, or choose another with --port"
            )


def wait_answering(url: str, service: Service, seconds: float) -> None:
    """Wait until ``url`` answers 200; :class:`StartupError` if ``service`` dies or never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not service.alive():
            code = service.process.returncode if service.process else None
            raise StartupError(f"the {service.name} exited with code {code}")
        status, _ = probe(url, timeout=2)
        if status == 200:
            return
        time.sleep(0.2)
    raise StartupError(f"the {service.name} did not answer on {url} in {seconds:.0f} s")


def basic_auth(api_auth: str) -> dict[str, str]:
    """The header a Prefect client sends with ``PREFECT_API_AUTH_STRING`` (none without one)."""
    if not api_auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(api_auth.encode()).decode()}


def wait_served(api_url: str, runner: Service, seconds: float, api_auth: str = "") -> None:
    """Wait until the runner has registered the deployments the gateway starts runs of."""
    deadline = time.monotonic() + seconds
    query = json.dumps({"deployments": {"name": {"any_": ["chatops"]}}}).encode()
    while time.monotonic() < deadline:
        if not runner.alive():
            raise StartupError(f"the runner exited with code {runner.process.returncode}")
        request = urllib.request.Request(
            f"{api_url}/deployments/filter",
            data=query,
            headers={"Content-Type": "application/json", **basic_auth(api_auth)},
        )
        with contextlib.suppress(OSError, ValueError), direct.open(request, timeout=2) as answer:
            if len(json.loads(answer.read())) >= len(DEPLOYMENTS):
                return
        time.sleep(0.2)
    raise StartupError(f"the runner did not register its deployments in {seconds:.0f} s")


def run(host: str = "127.0.0.1", port: int = 4200, database: str | None = None) -> int:
    """Start everything and supervise it until a signal; return an exit code."""
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    home().ensure()
    external = os.environ.get("PREFECT_API_URL")
    api_url = external or f"http://{host}:{port}/api"
    server_auth = "" if external else home().secret(PREFECT_API_AUTH, create=True)
    choice = chosen_database(database)
    env = base_environment(api_url, choice, api_auth=server_auth)
    if not external:
        refuse_taken_port(host, port)
    own_postgres = None
    if not external and choice == EMBEDDED:
        asked = EMBEDDED in (database, os.environ.get("CHATOPS_DATABASE_URL"))
        own_postgres = embedded_database(Path(env["PREFECT_HOME"]), asked)
    os.makedirs(env["PREFECT_HOME"], exist_ok=True)
    gateway_url = (
        f"http://{env.get('CHATOPS_GATEWAY_HOST', '127.0.0.1')}:"
        f"{env.get('CHATOPS_GATEWAY_PORT', '8000')}"
    )
    py = sys.executable
    server_env = {"PREFECT_SERVER_API_AUTH_STRING": server_auth}
    if own_postgres:  # its password is the server's alone
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = own_postgres.url
    services = [
        Service(
            "server",
            [py, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
            own_env=server_env,
        ),
        Service("runner", [py, "-m", "chatops.runner"], death_signal=signal.SIGKILL),
        Service("gateway", [py, "-m", "chatops.gateway"]),
    ]
    if external:
        services = services[1:]
    if own_postgres:
        services.insert(0, postgres_service(own_postgres))
    watching: subprocess.Popen | None = None
    try:
        start_all(services, env, own_postgres)
        # It loads Prefect while the server starts, then waits for the API to answer.
        watching = watch_silent_runs(env, gateway_url)
        for service in services:
            url = {"server": f"{api_url}/health", "gateway": f"{gateway_url}/healthz"}.get(
                service.name
            )
            if url:
                wait_answering(url, service, SERVER_START_SECONDS)
        wait_watching(watching)
        wait_served(
            api_url, services[-2], SERVER_START_SECONDS, env.get("PREFECT_API_AUTH_STRING", "")
        )
        ui_url = api_url.removesuffix("/api")
        write_up_file(
            home().up_file, pid=os.getpid(), api_url=api_url, ui_url=ui_url, gateway_url=gateway_url
        )
        print(f"chatops is up. Prefect UI: {ui_url}  (Ctrl-C stops everything)", flush=True)
        print(sign_in_hint(external), flush=True)
        supervise(services, env, stopping)
    finally:
        if watching is not None and watching.poll() is None:  # the server never answered
            watching.kill()
        # The gateway and the runner stop together (the runner lets deploys in flight finish
        # their batch), then the server they both talk to, then its database.
        clients = [service for service in services if service.name not in ("server", "database")]
        for service in clients:
            service.terminate()
        backends = [s for name in ("server", "database") for s in services if s.name == name]
        for service in [*clients, *backends]:
            service.stop()
        _forget_up_file()
    return 0


def postgres_service(database: EmbeddedPostgres) -> Service:
    """The embedded PostgreSQL as a supervised child: a fast shutdown (SIGINT) when asked to
    stop, and when ``chatops up`` dies."""
    return Service(
        "database",
        database.argv(),
        death_signal=signal.SIGINT,
        stop_signal=signal.SIGINT,
    )


def start_all(
    services: list[Service], env: Mapping[str, str], database: EmbeddedPostgres | None
) -> None:
    """Start every service at once (the runner and gateway load while the server does); with
    our own PostgreSQL, the Prefect server once it accepts connections and has its database."""
    for service in services:
        if service.name != "server" or database is None:
            service.start(env)
    if database is not None:
        started = {service.name: service for service in services}
        assert started["database"].process is not None
        database.wait_ready(started["database"].process)
        database.create_database()
        started["server"].start(env)


def _recorded_pid() -> int | None:
    """The pid in ``up.json``: a ``chatops up`` that runs, or ran, on this home."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        pid = json.loads(home().up_file.read_text()).get("pid")
        return pid if isinstance(pid, int) else None
    return None


def watch_silent_runs(env: Mapping[str, str], gateway_url: str) -> subprocess.Popen:
    """Start creating (or updating), once the API answers, Prefect's automation that crashes
    and reports, through our gateway, the runs that stopped sending heartbeats
    (:mod:`chatops.dead_runs`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "chatops.dead_runs", "watch", gateway_url, "--wait"],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_watching(watching: subprocess.Popen | None) -> None:
    """Wait for :func:`watch_silent_runs`; a failure is said, not fatal (the runner still reports
    runs whose process it sees die)."""
    if watching is None:
        return
    try:
        _, errors = watching.communicate(timeout=SERVER_START_SECONDS)
    except subprocess.TimeoutExpired:
        watching.kill()
        _, errors = watching.communicate()
    if watching.returncode != 0:
        print(
            "chatops: could not set up the automation that reports silent runs "
            f"(a frozen or lost run is not noticed):\n{errors[-2000:]}",
            flush=True,
        )


def sign_in_hint(external: str | None) -> str:
    """How to sign in to the UI, which asks for the API's credential."""
    if external:
        return "  The UI asks for the server's credential (PREFECT_API_AUTH_STRING), if it has one."
    path = home().root / "secrets" / PREFECT_API_AUTH
    return f"  The UI asks for a password: paste the contents of {path}"


def supervise(services: list[Service], env: Mapping[str, str], stopping: list[int]) -> None:
    """Start again whatever dies, with a growing pause, until a signal asks to stop."""
    while not stopping:
        for service in services:
            if service.alive() or stopping:
                continue
            code = service.process.returncode if service.process else None
            if time.monotonic() - service.started > 60:
                service.restarts = 0  # it ran a good while: start afresh
            pause = RESTART_BACKOFF[min(service.restarts, len(RESTART_BACKOFF) - 1)]
            print(
                f"chatops: the {service.name} exited (code {code}); starting it again in "
                f"{pause:.0f} s",
                flush=True,
            )
            _sleep_unless(stopping, pause)
            if not stopping:
                service.restarts += 1
                service.start(env)
        time.sleep(0.2)


def _sleep_unless(stopping: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopping and time.monotonic() < deadline:
        time.sleep(0.1)


def _forget_up_file() -> None:
    path = home().up_file
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass
