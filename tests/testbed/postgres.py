"""A throwaway PostgreSQL server for tests, run as a plain process (no systemd, no pg_ctlcluster).

``throwaway_postgres()`` (a context manager) or the ``postgres`` fixture gives a
:class:`Postgres`: a fresh cluster made by ``initdb`` (or copied from a kept one,
:func:`template_cluster`) in its own directory, listening on 127.0.0.1 and a free port only,
with a login role and a database for Prefect; ``.url`` is the
SQLAlchemy URL Prefect wants (``postgresql+asyncpg://prefect:prefect@127.0.0.1:<port>/prefect``).
On exit the server is stopped and its directory removed.

Settings are for speed, not durability (``fsync``, ``synchronous_commit`` and
``full_page_writes`` off): a crash loses the cluster, which a test throws away anyway.

PostgreSQL refuses to run as root, so when the tests run as root (they do: the test bed needs
it) ``initdb``, ``pg_ctl`` and ``psql`` run as the ``postgres`` system user that Debian's
``postgresql`` package creates, and the cluster lives under ``/tmp/chatops-testpg`` (which that
user can reach) in a directory named after the owning test process: ``pg-<pid>-<n>``. A
cluster whose owner is gone (a killed test session) is stopped and removed by
:func:`preclean`, which every new cluster runs first; clusters of live sessions stay.

Needs the Debian packages ``postgresql`` (server binaries in ``/usr/lib/postgresql/15/bin``,
override with ``PG_BIN``) and ``postgresql-client``; see scripts/install-deps.sh.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.net import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
BASE = Path("/tmp/chatops-testpg")
RUN_AS = "postgres"
ROLE = DATABASE = PASSWORD = "prefect"
_DIR_RE = re.compile(r"^pg-(\d+)-(\d+)$")
_serial = itertools.count(1)

FAST_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "log_min_messages": "warning",
}


@dataclass(frozen=True)
class Postgres:
    """One running throwaway cluster: ``.url`` for Prefect, ``.port``, ``.directory``."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"


def missing_requirements() -> list[str]:
    """What this machine lacks for a throwaway cluster (empty when ready)."""
    missing = [str(PG_BIN / t) for t in ("initdb", "pg_ctl", "psql") if not (PG_BIN / t).exists()]
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(RUN_AS)
        except KeyError:
            missing.append(f"the {RUN_AS} user")
    return missing


def _as_owner() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    return {"user": RUN_AS, "group": RUN_AS, "extra_groups": []}


def _pg(args: list[object], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the cluster's owner; raise with its output when it fails."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        **_as_owner(),
    )
    if proc.returncode:
        raise RuntimeError(
            f"{[str(a) for a in args]} -> rc {proc.returncode}\n{proc.stdout[-2000:]}"
            f"{proc.stderr[-2000:]}"
        )
    return proc


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (init here reaps orphans slowly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _postmaster(data: Path) -> int | None:
    """Pid of the live postmaster of ``data`` (checked against its command line), or None."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) and "postgres" in cmdline and str(data) in cmdline else None


def stop(directory: Path, timeout: float = 30) -> None:
    """Stop the cluster in ``directory`` at once (``-m immediate``), SIGKILL if that fails."""
    data = directory / "data"
    pid = _postmaster(data)
    if pid is None:
        return
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        _pg(
            [PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", int(timeout), "stop"],
            cwd=directory,
            timeout=timeout + 5,
        )
    if _postmaster(data) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _alive(pid) and (b"python" in cmdline or b"pytest" in cmdline)


def preclean() -> list[Path]:
    """Stop and remove clusters whose owning test process is gone; return what was removed."""
    removed = []
    for directory in sorted(BASE.glob("pg-*")) if BASE.is_dir() else []:
        match = _DIR_RE.match(directory.name)
        if not match or _owner_alive(int(match.group(1))):
            continue
        stop(directory)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _own_directory(directory: Path) -> Path:
    """Give ``directory`` to the cluster's owner, with its socket directory (returned) inside:
    0700, so only the owner gets in through the socket."""
    sock = directory / "sock"
    sock.mkdir(parents=True)
    if os.geteuid() == 0:
        for path in (directory, sock):
            shutil.chown(path, RUN_AS, RUN_AS)
    sock.chmod(0o700)
    return sock


def _initdb(directory: Path) -> None:
    sock = _own_directory(directory)
    _pg(
        [
            PG_BIN / "initdb",
            "-D",
            directory / "data",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",  # the socket directory is 0700: only its owner gets in
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--no-instructions",
        ],
        cwd=directory,
        timeout=120,
    )
    conf = {**FAST_SETTINGS, "unix_socket_directories": f"'{sock}'"}
    with open(directory / "data" / "postgresql.conf", "a") as f:
        f.writelines(f"{key} = {value}\n" for key, value in conf.items())


def _from_template(directory: Path, template: Path) -> None:
    """The cluster in ``directory`` starts as a copy of the stopped one in ``template``."""
    _own_directory(directory)
    subprocess.run(["cp", "-a", str(template), str(directory / "data")], check=True)


def _start(directory: Path, port: int) -> None:
    log = directory / "postgres.log"
    _pg(
        [
            PG_BIN / "pg_ctl",
            "-D",
            directory / "data",
            "-l",
            log,
            "-o",
            f"-p {port} -k {directory / 'sock'}",  # a copied cluster names its old socket dir
            "-w",
            "-t",
            "60",
            "start",
        ],
        cwd=directory,
        timeout=70,
    )


def _create_role_and_database(directory: Path, port: int) -> None:
    psql = [
        PG_BIN / "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        directory / "sock",
        "-p",
        port,
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
    ]
    _pg([*psql, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"], cwd=directory)
    _pg([*psql, f"CREATE DATABASE {DATABASE} OWNER {ROLE}"], cwd=directory)


@contextlib.contextmanager
def throwaway_postgres(attempts: int = 3, template: Path | None = None) -> Iterator[Postgres]:
    """A fresh cluster on a free 127.0.0.1 port; stopped and deleted on exit, even on errors.

    ``template``: the data directory of a stopped cluster (:func:`template_cluster`) to start
    from, role and database included, instead of a new one. Another process may take the free
    port between the pick and the start: then a new port is tried (``attempts`` in all).
    """
    missing = missing_requirements()
    if missing:
        raise RuntimeError(
            f"PostgreSQL unavailable, missing: {', '.join(missing)} (run scripts/install-deps.sh)"
        )
    BASE.mkdir(mode=0o755, exist_ok=True)
    BASE.chmod(0o755)
    preclean()
    directory = BASE / f"pg-{os.getpid()}-{next(_serial)}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    try:
        if template is None:
            _initdb(directory)
        else:
            _from_template(directory, template)
        for attempt in range(attempts):
            port = free_port()
            try:
                _start(directory, port)
                break
            except RuntimeError:
                log = (directory / "postgres.log").read_text(errors="replace")
                if attempt + 1 == attempts or "could not bind" not in log:
                    raise RuntimeError(f"PostgreSQL did not start:\n{log[-3000:]}") from None
        if template is None:
            _create_role_and_database(directory, port)
        yield Postgres(directory=directory, port=port)
    finally:
        stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


def template_cluster(path: Path, fill: Callable[[Postgres], None]) -> Path:
    """The data directory of a stopped cluster at ``path``, made once by ``fill`` (given a new
    running cluster) and kept: later clusters start as copies of it (``template=``)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    making = path.with_name(f"{path.name}.{os.getpid()}")
    with throwaway_postgres() as cluster:
        fill(cluster)
        _pg(
            [PG_BIN / "pg_ctl", "-D", cluster.data, "-m", "fast", "-w", "stop"],
            cwd=cluster.directory,
        )
        shutil.rmtree(making, ignore_errors=True)
        subprocess.run(["cp", "-a", str(cluster.data), str(making)], check=True)
    try:
        os.replace(making, path)
    except OSError:  # another test process made one at the same time: theirs is as good
        shutil.rmtree(making, ignore_errors=True)
    return path


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster for one test (see the module doc)."""
    with throwaway_postgres() as cluster:
        yield cluster
