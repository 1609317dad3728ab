"""Ship releases to an environment's hosts over SSH, switch them, and switch them back.

Every host keeps its releases side by side and one symlink to the live one::

    <deploy_path>/releases/<UTC time>-<sha7>/<artifact>   (+ REVISION holding the full sha)
    <deploy_path>/current -> releases/<UTC time>-<sha7>

Each task opens its own connection to its host (fabric connections are not shared between
threads) with connect, banner, auth, channel, command and SFTP timeouts set, so an unreachable or
hung host fails the task instead of hanging the deploy. Everything sent to a remote shell is
quoted with :func:`shlex.quote`.
"""

import io
import logging
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from fabric import Config, Connection
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.transactions import Transaction, get_transaction

from blocks.environment import Environment
from tasks.health import Unhealthy, wait_healthy

_KEY_TYPES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


@dataclass(frozen=True)
class Release:
    """One deployable build: ``id`` names its folder under ``releases/`` on every host."""

    id: str
    sha: str

    @classmethod
    def new(cls, sha: str, now: datetime | None = None) -> "Release":
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        return cls(id=f"{stamp}-{sha[:7]}", sha=sha)


class LogStream(io.TextIOBase):
    """A text stream that sends each complete line to ``logger``, prefixed with the host."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, host: str):
        self._logger, self._host, self._partial = logger, host, ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._logger.info("[%s] %s", self._host, line.rstrip("\r"))
        return len(text)


def load_private_key(text: str) -> paramiko.PKey:
    """Parse an OpenSSH or PEM private key of any type paramiko knows."""
    for key_type in _KEY_TYPES:
        try:
            return key_type.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("the environment's SSH private key is not a readable ed25519/ECDSA/RSA key")


def split_host(host: str, default_port: int) -> tuple[str, int]:
    """``web-1:2222`` → ``("web-1", 2222)``; ``web-1`` → ``("web-1", default_port)``."""
    name, colon, port = host.rpartition(":")
    return (name, int(port)) if colon else (host, default_port)


def pin_host_keys(client: paramiko.SSHClient, known_hosts: list[str]) -> None:
    """Trust exactly the given known_hosts lines and refuse any other host key."""
    keys = client.get_host_keys()
    for line in known_hosts:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        if entry is None:
            raise ValueError(f"not a known_hosts line: {line[:60]!r}")
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


def connect(env: Environment, host: str) -> Connection:
    """An unopened connection to ``host`` with every timeout set; use it in a ``with`` block."""
    name, port = split_host(host, env.ssh_port)
    timeout = env.connect_timeout
    conn = Connection(
        name,
        user=env.ssh_user,
        port=port,
        connect_timeout=int(timeout),
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
    if env.known_hosts:
        pin_host_keys(conn.client, env.known_hosts)
    return conn


def remote(conn: Connection, command: str, timeout: float, host: str) -> str:
    """Run ``command`` on the host, its output in the run's logs; raise if it fails or hangs."""
    stream = LogStream(get_run_logger(), host)
    result = conn.run(command, timeout=timeout, out_stream=stream, err_stream=stream)
    return result.stdout.strip()


def releases_dir(env: Environment) -> str:
    return f"{env.deploy_path.rstrip('/')}/releases"


def current_link(env: Environment) -> str:
    return f"{env.deploy_path.rstrip('/')}/current"


def current_release(conn: Connection, env: Environment, host: str) -> str | None:
    """The release id ``current`` points at on this host, or None before the first deploy."""
    target = remote(conn, f"readlink {shlex.quote(current_link(env))} || true", 30, host)
    return Path(target).name if target else None


def switch(conn: Connection, env: Environment, host: str, release_id: str) -> None:
    """Point ``current`` at ``releases/<release_id>`` atomically (symlink, then rename)."""
    link, target = current_link(env), f"releases/{release_id}"
    tmp = f"{link}.{release_id}.tmp"
    q = shlex.quote
    remote(
        conn,
        f"test -d {q(releases_dir(env) + '/' + release_id)} && "
        f"ln -sfn {q(target)} {q(tmp)} && mv -Tf {q(tmp)} {q(link)}",
        30,
        host,
    )


def restart(conn: Connection, env: Environment, host: str) -> None:
    remote(
        conn,
        f"cd {shlex.quote(current_link(env))} && {env.restart_command}",
        env.command_timeout,
        host,
    )


@task(
    name="upload",
    task_run_name="upload {host}",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
)
def upload(env: Environment, host: str, artifact: str, release: Release) -> str:
    """Copy ``artifact`` and a REVISION file into ``releases/<release.id>/`` on ``host``.

    The files land in a hidden folder first and are renamed into place, so a release folder is
    either complete or absent; retrying is safe.
    """
    final = f"{releases_dir(env)}/{release.id}"
    partial = f"{releases_dir(env)}/.{release.id}.partial"
    q = shlex.quote
    with connect(env, host) as conn:
        remote(conn, f"rm -rf {q(partial)} && mkdir -p {q(partial)}", 60, host)
        conn.sftp().get_channel().settimeout(env.command_timeout)
        conn.put(artifact, f"{partial}/{Path(artifact).name}")
        conn.put(io.BytesIO(f"{release.sha}\n".encode()), f"{partial}/REVISION")
        remote(conn, f"rm -rf {q(final)} && mv -T {q(partial)} {q(final)}", 60, host)
    get_run_logger().info("Uploaded %s to %s:%s", Path(artifact).name, host, final)
    return host


@task(name="run task", task_run_name="run task on {host}", cache_policy=NO_CACHE)
def run_task_command(env: Environment, host: str, release: Release, command: str) -> None:
    """Run a custom deploy task's ``command`` in the new release's folder, before any switch."""
    with connect(env, host) as conn:
        remote(
            conn,
            f"cd {shlex.quote(releases_dir(env) + '/' + release.id)} && {command}",
            env.command_timeout,
            host,
        )


@task(name="activate", task_run_name="activate {host}", cache_policy=NO_CACHE)
def activate(env: Environment, host: str, release: Release) -> str | None:
    """Switch ``host`` to ``release`` and restart it; return the release it ran before.

    If the restart fails the host is switched back and restarted on its previous release before
    the error is raised. Inside a transaction, a later failure (e.g. a health check) calls
    :func:`switch_back` for every host this task switched.
    """
    with connect(env, host) as conn:
        previous = current_release(conn, env, host)
        txn = get_transaction()
        if txn is not None:
            txn.set("host", host)
            txn.set("environment", env)
            txn.set("previous", previous)
        switch(conn, env, host, release.id)
        try:
            restart(conn, env, host)
        except Exception:
            restore(conn, env, host, previous)
            raise
    get_run_logger().info("%s now runs %s (was %s)", host, release.id, previous or "nothing")
    return previous


def restore(conn: Connection, env: Environment, host: str, previous: str | None) -> None:
    """Put ``host`` back on ``previous``, restart it and wait until it is healthy again.

    Without a previous release there is nothing to go back to: that is only logged.
    """
    logger = get_run_logger()
    if previous is None:
        logger.warning("%s had no earlier release to go back to; left as it is", host)
        return
    switch(conn, env, host, previous)
    restart(conn, env, host)
    if env.health_url:
        revision = f"{releases_dir(env)}/{previous}/REVISION"
        sha = remote(conn, f"cat {shlex.quote(revision)}", 30, host)
        try:
            wait_healthy(env.health_url, host, sha, env.health_timeout)
        except Unhealthy as exc:
            logger.error("Rolled %s back to %s, but it is not healthy: %s", host, previous, exc)
            return
    logger.warning("Rolled %s back to %s", host, previous)


@activate.on_rollback
def switch_back(txn: Transaction) -> None:
    """Undo :func:`activate` on one host when its deploy's transaction rolls back."""
    env: Environment = txn.get("environment")
    host: str = txn.get("host")
    with connect(env, host) as conn:
        restore(conn, env, host, txn.get("previous"))


@task(name="prune releases", task_run_name="prune releases {host}", cache_policy=NO_CACHE)
def prune(env: Environment, host: str) -> list[str]:
    """Delete all but the newest ``keep_releases`` releases; never the current or previous one."""
    with connect(env, host) as conn:
        live = current_release(conn, env, host)
        listing = remote(conn, f"ls -1 {shlex.quote(releases_dir(env))}", 30, host).split()
        ordered = sorted(name for name in listing if not name.startswith("."))
        keep = set(ordered[-env.keep_releases :])
        if live in ordered:
            keep.update(ordered[max(0, ordered.index(live) - 1) : ordered.index(live) + 1])
        doomed = [name for name in ordered if name not in keep]
        if doomed:
            paths = " ".join(shlex.quote(f"{releases_dir(env)}/{name}") for name in doomed)
            remote(conn, f"rm -rf -- {paths}", 120, host)
    return doomed


@task(name="list releases", task_run_name="list releases {host}", retries=1, cache_policy=NO_CACHE)
def list_releases(env: Environment, host: str) -> tuple[list[Release], str | None]:
    """The complete releases on ``host``, oldest first, and the id ``current`` points at."""
    script = (
        'cd "$1" 2>/dev/null || exit 0; for d in */; do d=${d%/}; '
        '[ -f "$d/REVISION" ] && printf "%s %s\\n" "$d" "$(head -c 64 "$d/REVISION")"; '
        "done; true"
    )
    with connect(env, host) as conn:
        listing = remote(
            conn, f"sh -c {shlex.quote(script)} sh {shlex.quote(releases_dir(env))}", 30, host
        )
        live = current_release(conn, env, host)
    found = [
        Release(id=rid, sha=sha)
        for rid, sha in (line.split(" ", 1) for line in listing.splitlines() if " " in line)
    ]
    return sorted(found, key=lambda r: r.id), live
