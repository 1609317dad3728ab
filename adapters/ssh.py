"""SSH to the hosts of an environment: one connection per host, bounded commands, clear failures.

Everything here is bounded in time. Connecting waits at most ``connect_timeout`` for the TCP
connection, the banner, authentication and each new channel; a command waits its own timeout;
a file transfer fails when the line stays silent for ``connect_timeout`` or when it runs past
``2 x connect_timeout + size / min_upload_rate``.

Every failure is a :class:`HostFailed` that names the host, the step and the likely cause, and
carries the last lines of the command's output::

    >>> print(HostFailed("web-2", "restart", "exit code 3", ["Starting...", "port 8080 in use"]))
    web-2: restart failed: exit code 3
        Starting...
        port 8080 in use

Host keys are always checked before logging in: pinned, learned once, or refused (see
:mod:`adapters.host_keys`).

Work on a host goes through a :class:`HostSession` (``with session(env, host, step) as h:
h.run(command, step)``, ``h.put(file, receiver, step)``). Inside ``with sessions():`` (a deploy)
each host gets one connection, opened on first use and reused by every later step; outside, each
:func:`session` opens and closes its own. Everything sent to a remote shell is quoted by the
caller with :func:`shlex.quote`.
"""

import errno
import io
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut
from paramiko.ssh_exception import NoValidConnectionsError

from adapters.host_keys import (
    HostKeyNotStored,
    UnknownHostKey,
    known_hosts_line,
    known_hosts_name,
    trust,
)
from adapters.logs import run_logger
from adapters.net import split_host
from blocks.environment import ACCEPT_NEW, Environment
from model.errors import ChatopsError, DeployError

TAIL_LINES = 20
KILL_AFTER_SECONDS = 5
"""After a remote command's timeout, how long it has to exit on SIGTERM before SIGKILL."""
_KEY_TYPES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
_CHUNK = 64 * 1024
STORE_SECONDS = 30.0
"""Default of ``CHATOPS_UPLOAD_STORE_SECONDS``: once every byte is sent, how long the host may
take to store the upload (a busy disk)."""


def store_seconds() -> float:
    """How long the host may take to store an upload once every byte is sent
    (``CHATOPS_UPLOAD_STORE_SECONDS``, default :data:`STORE_SECONDS`)."""
    return float(os.environ.get("CHATOPS_UPLOAD_STORE_SECONDS", STORE_SECONDS))


class HostFailed(ChatopsError, RuntimeError):
    """A step failed on one host: who, what and why, plus the output that explains it.

    Whether that is the host saying no or us unable to work there, each subclass says."""

    def __init__(self, host: str, step: str, cause: str, tail: list[str] | None = None) -> None:
        super().__init__(host=host, step=step, cause=cause, tail=tail or ())


class HostUnreachable(HostFailed, DeployError):
    """The host could not be reached or would not let us in."""


class RemoteCommandFailed(HostFailed, DeployError):
    """A command on the host exited non-zero (``exit_code``), or hung (:class:`CommandHung`)."""

    def __init__(
        self, host: str, step: str, cause: str, tail: list[str] | None = None, exit_code: int = -1
    ) -> None:
        super().__init__(host, step, cause, tail)
        self.exit_code = exit_code


class CommandHung(RemoteCommandFailed):
    """A command on the host did not finish in time; its process group was killed there."""


def tail(text: str, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of ``text``."""
    return [line for line in text.splitlines() if line.strip()][-lines:]


def load_private_key(text: str) -> paramiko.PKey:
    """Parse an OpenSSH or PEM private key of any type paramiko knows."""
    for key_type in _KEY_TYPES:
        try:
            return key_type.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("the environment's SSH private key is not a readable ed25519/ECDSA/RSA key")


class LogStream(io.TextIOBase):
    """A text stream that sends each complete line to ``logger``, prefixed with the host."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, host: str) -> None:
        self._logger, self._host, self._partial = logger, host, ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._logger.info("[%s] %s", self._host, line.rstrip("\r"))
        return len(text)


# --------------------------------------------------------------------------- connections
def _new_connection(env: Environment, host: str) -> Connection:
    name, port = split_host(host, env.ssh_port)
    timeout = env.connect_timeout
    conn = Connection(
        name,
        user=env.ssh_user,
        port=port,
        connect_timeout=max(1, int(timeout)),
        config=Config(overrides={"run": {"in_stream": False}}),
        connect_kwargs={
            "pkey": load_private_key(env.ssh_private_key.get_secret_value()),
            "look_for_keys": False,
            "allow_agent": False,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "channel_timeout": timeout,
        },
    )
    trust(conn.client, env)  # every host key is checked: pinned, learned once, or refused
    return conn


def why_unreachable(exc: BaseException, env: Environment, host: str, step: str) -> HostFailed:
    """The likely cause of a connection failure, in words an operator can act on."""
    name, port = split_host(host, env.ssh_port)
    where, seconds = f"{name}:{port}", env.connect_timeout
    if isinstance(exc, NoValidConnectionsError):
        cause = f"connection refused on {where}: is sshd running there?"
    elif isinstance(exc, (TimeoutError, socket.timeout)):
        cause = (
            f"no answer from {where} within {seconds:.0f} s: "
            "is a firewall dropping the packets, or is the route missing?"
        )
    elif isinstance(exc, socket.gaierror):
        cause = f"cannot resolve {name!r}: check the host name"
    elif isinstance(exc, OSError) and exc.errno in (
        errno.EINVAL,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
    ):
        cause = f"no route to {where} ({exc.strerror}): is the network to it up?"
    elif isinstance(exc, UnknownHostKey):
        cause = _unknown_key_cause(exc.key, name, known_hosts_name(host, env.ssh_port))
    elif isinstance(exc, paramiko.BadHostKeyException):
        cause = _changed_key_cause(exc, env, name, known_hosts_name(host, env.ssh_port))
    elif isinstance(exc, HostKeyNotStored):
        cause = f"{name}'s host key was not trusted (host_key_policy: accept-new): {exc}"
    elif isinstance(exc, paramiko.AuthenticationException):
        key = load_private_key(env.ssh_private_key.get_secret_value()).fingerprint
        cause = (
            f"{name} refused user {env.ssh_user!r} with key {key}: "
            f"is its public key in ~{env.ssh_user}/.ssh/authorized_keys?"
        )
    elif isinstance(exc, paramiko.SSHException):
        cause = _ssh_protocol_cause(str(exc), name, where, seconds)
    else:
        cause = f"{type(exc).__name__}: {exc}"
    return HostUnreachable(host, step, cause)


def _unknown_key_cause(key: paramiko.PKey, name: str, known_name: str) -> str:
    # The line to add comes last, so it can be copied whole.
    return (
        f"{name} presented host key {key.fingerprint} ({key.get_name()}), which known_hosts "
        "does not pin (host_key_policy: strict). If it is the host's key (on the host: "
        f"ssh-keygen -lf /etc/ssh/ssh_host_{_key_file_type(key)}_key.pub), add this line to "
        f"ssh.known_hosts: {known_hosts_line(known_name, key)}"
    )


def _changed_key_cause(
    exc: paramiko.BadHostKeyException, env: Environment, name: str, known_name: str
) -> str:
    first = (
        " (accept-new keeps the first key a host presented)"
        if env.host_key_policy == ACCEPT_NEW
        else ""
    )
    return (
        f"{name} presented host key {exc.key.fingerprint}, but {exc.expected_key.fingerprint}"
        f" is pinned{first}: someone may be intercepting the connection. If the host was "
        "rebuilt, compare fingerprints and update known_hosts: put this line in "
        f"ssh.known_hosts: {known_hosts_line(known_name, exc.key)}"
    )


def _key_file_type(key: paramiko.PKey) -> str:
    """``ssh-ed25519`` → ``ed25519``, ``ecdsa-sha2-nistp256`` → ``ecdsa`` (sshd's file names)."""
    return key.get_name().removeprefix("ssh-").split("-")[0]


def _ssh_protocol_cause(message: str, name: str, where: str, seconds: float) -> str:
    if "banner" in message:
        return (
            f"{where} accepted the connection but sent no SSH banner within {seconds:.0f} s: "
            "is sshd hung, or something else listening there?"
        )
    if "channel" in message.lower():
        return f"{name} stopped answering (no new channel within {seconds:.0f} s)"
    return f"SSH error: {message}"


def _open(env: Environment, host: str, step: str) -> Connection:
    conn = _new_connection(env, host)
    try:
        conn.open()
    except (OSError, paramiko.SSHException) as exc:
        conn.close()
        raise why_unreachable(exc, env, host, step) from None
    return conn


_pool: ContextVar[dict[tuple, Connection] | None] = ContextVar("ssh_sessions", default=None)
"""The connections of the :func:`sessions` block this flow run is in. A context variable, so
each run has its own, and the task threads Prefect starts (with a copy of the run's context)
share it."""
_pool_lock = threading.Lock()


def _pool_key(env: Environment, host: str) -> tuple:
    return (
        host,
        env.ssh_user,
        env.ssh_port,
        env.ssh_private_key.get_secret_value(),
        tuple(env.known_hosts),
        env.host_key_policy,
        env.connect_timeout,
    )


@contextmanager
def sessions() -> Iterator[None]:
    """Keep one open connection per host for the duration of the block; close them after."""
    if _pool.get() is not None:  # nested: the outer block keeps and closes them
        yield
        return
    pool: dict[tuple, Connection] = {}
    token = _pool.set(pool)
    try:
        yield
    finally:
        _pool.reset(token)
        with _pool_lock:
            connections = list(pool.values())
            pool.clear()
        for conn in connections:
            conn.close()


def bounded(command: str, seconds: float) -> str:
    """``command`` run under the host's ``timeout``: on expiry its whole process group gets
    SIGTERM, then SIGKILL :data:`KILL_AFTER_SECONDS` later (exit code 124 or 137)."""
    return (
        f"timeout --kill-after={KILL_AFTER_SECONDS}s {max(1, int(seconds))}s "
        f"sh -c {shlex.quote(command)}"
    )


class HostSession:
    """One host of an environment over one SSH connection, fabric-style: it carries the host
    and its settings, so a step reads ``host.run("cat REVISION", "check")``.

    Every call names its step, so every failure says where it happened (:class:`HostFailed`).
    """

    def __init__(self, env: Environment, host: str, connection: Connection) -> None:
        self.env = env
        self.host = host
        self.connection = connection

    def run(self, command: str, step: str, timeout: float = 30.0, quiet: bool = False) -> str:
        """Run ``command`` on the host, its output in the run's logs (not when ``quiet``: a
        listing the step reads, not a person); return its stdout.

        A non-zero exit raises :class:`RemoteCommandFailed` (124/137, the exit codes of
        :func:`bounded`, raise :class:`CommandHung`), its output's tail in the error either
        way; a broken connection :class:`HostUnreachable`.
        """
        host = self.host
        stream = None if quiet else LogStream(run_logger(__name__), host)
        try:
            result = self.connection.run(
                command,
                timeout=timeout,
                warn=True,
                hide=quiet,
                out_stream=stream,
                err_stream=stream,
            )
        except CommandTimedOut as exc:
            output = exc.result.stdout + exc.result.stderr
            raise CommandHung(
                host, step, f"no answer within {timeout:.0f} s", tail(output), exit_code=-1
            ) from None
        except (OSError, paramiko.SSHException) as exc:
            raise why_unreachable(exc, self.env, host, step) from None
        if result.exited in (124, 137) and command.startswith("timeout "):
            raise CommandHung(
                host,
                step,
                "did not finish in time; its processes on the host were killed",
                tail(result.stdout + result.stderr),
                exit_code=result.exited,
            )
        if result.exited != 0:
            raise RemoteCommandFailed(
                host,
                step,
                f"exit code {result.exited}",
                tail(result.stdout + result.stderr),
                exit_code=result.exited,
            )
        return result.stdout.strip()

    def run_bounded(self, command: str, step: str, seconds: float) -> str:
        """:meth:`run` ``command`` under the host's own ``timeout`` of ``seconds`` (its whole
        process group is killed on expiry), waiting long enough to hear that it was."""
        limit = seconds + KILL_AFTER_SECONDS + self.env.connect_timeout
        return self.run(bounded(command, seconds), step, timeout=limit)

    def put(self, local: Path, receiver: str, step: str) -> float:
        """Stream ``local`` into the stdin of the remote ``receiver`` command; return the
        seconds it took (see :func:`_send_file` for its bounds)."""
        return _send_file(self.connection, local, receiver, host=self.host, step=step, env=self.env)


@contextmanager
def session(env: Environment, host: str, step: str) -> Iterator[HostSession]:
    """An open session with ``host``: over the connection of the :func:`sessions` block this
    run is in, or a new one closed afterwards.

    A connection that failed is closed and forgotten, so a retried step connects afresh.
    """
    key = _pool_key(env, host)
    pool = _pool.get()
    with _pool_lock:
        conn = pool.get(key) if pool is not None else None
    if conn is None or not conn.is_connected:
        conn = _open(env, host, step)
        if pool is not None:
            with _pool_lock:
                pool[key] = conn
    try:
        yield HostSession(env, host, conn)
    except BaseException:
        if pool is not None:
            with _pool_lock:
                if pool.get(key) is conn:
                    del pool[key]
        conn.close()
        raise
    else:
        if pool is None:
            conn.close()


def _send_file(
    conn: Connection,
    local: Path,
    receiver: str,
    *,
    host: str,
    step: str,
    env: Environment,
) -> float:
    """Stream ``local`` into the stdin of the remote ``receiver`` command; return the seconds.

    A watchdog closes the connection when sending makes no progress for ``connect_timeout``
    seconds or runs past ``2 x connect_timeout + size / min_upload_rate`` (a blocked socket write
    would otherwise wait forever); once everything is sent, the host has
    :func:`store_seconds` more to store it. The receiver runs under the host's ``timeout`` with
    that whole bound, so a stalled transfer is cleaned up on the host even when the host cannot
    be reached any more.
    """
    size = local.stat().st_size
    stall = env.connect_timeout
    limit = 2 * stall + size / env.min_upload_rate
    settle = limit + store_seconds()  # the host's own bound: receiving, then storing
    started = time.monotonic()
    transport = conn.client.get_transport()
    moved, deadline = [started], [started + limit + stall]
    gave_up = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.25):
            now = time.monotonic()
            if now - moved[0] > stall or now > deadline[0]:
                gave_up.set()
                transport.close()  # unblocks a write waiting on a dead link
                return

    watchdog = threading.Thread(target=watch, name=f"upload-watchdog-{host}", daemon=True)
    watchdog.start()
    try:
        channel = transport.open_session(timeout=stall)
        channel.settimeout(stall)
        channel.exec_command(bounded(receiver, settle))
        with open(local, "rb") as source:
            while chunk := source.read(_CHUNK):
                channel.sendall(chunk)
                moved[0] = time.monotonic()
        channel.shutdown_write()
        moved[0], deadline[0] = float("inf"), started + settle + stall  # all sent: the host stores
        if not channel.status_event.wait(max(0.1, settle - (time.monotonic() - started))):
            raise TimeoutError("no exit status")
        if gave_up.is_set():
            raise TimeoutError("gave up")
        code = channel.recv_exit_status()
        errors = channel.makefile_stderr("rb").read().decode(errors="replace")
        channel.close()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        took = time.monotonic() - started
        conn.close()
        cause = (
            f"transfer of {size} bytes stalled for {stall:.0f} s or ran past {limit:.0f} s "
            f"(gave up after {took:.1f} s; the bound is 2 x connect_timeout + size / "
            "min_upload_rate): is the link to the host dropping packets or very slow?"
        )
        if not (gave_up.is_set() or isinstance(exc, (TimeoutError, socket.timeout))):
            cause = why_unreachable(exc, env, host, step).cause
        raise HostUnreachable(host, step, cause) from None
    finally:
        done.set()
    if code != 0:
        raise RemoteCommandFailed(host, step, f"exit code {code}", tail(errors), exit_code=code)
    return time.monotonic() - started
