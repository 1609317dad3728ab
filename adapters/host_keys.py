"""Host keys: which keys an environment trusts, and learning a host's first key (accept-new).

Every SSH connection checks the host's key. The environment's ``known_hosts`` lines pin keys;
a host that presents a key they do not list is refused, unless the environment says
``host_key_policy: accept-new``. Then the first key a host presents is added to the saved
Environment block's ``known_hosts`` and every later connection must present that same key
(trust on first use, as OpenSSH's ``StrictHostKeyChecking=accept-new``).

Saving a learned key is a read-modify-write of the whole block, so it happens under
:func:`host_keys_locked`: a Prefect global concurrency limit (one slot) shared by every process
that talks to the same Prefect API (the hosts of one deploy connect in parallel threads, two runs
may learn at once, and ``chatops config apply`` rewrites the block), plus a thread lock so the
threads of one process queue here instead of polling the API. The block is read again after the
lock is taken, so a key another thread or run learned meanwhile is kept, and checked.
"""

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from adapters.logs import run_logger
from adapters.net import split_host
from blocks.environment import ACCEPT_NEW, Environment
from model.errors import DeployError

LOCK_NAME = "chatops-host-keys"
"""The Prefect global concurrency limit (limit 1) that serializes changes to known_hosts."""
LEASE_SECONDS = 60
"""The shortest lease Prefect allows: a lock held by a process that died frees a minute later."""
LOCK_WAIT_SECONDS = 2 * LEASE_SECONDS
"""How long to wait for the lock: long enough for a dead holder's lease to run out."""

_thread_lock = threading.Lock()


class UnknownHostKey(DeployError, paramiko.SSHException):
    """The host presented a key that ``known_hosts`` does not pin, and the policy is strict.

    The key is kept as its type and public blob (:meth:`presented`): a paramiko key object does
    not pickle, and Prefect pickles exceptions."""

    def __init__(self, name: str, key_type: str, key_blob: bytes) -> None:
        self.name, self.key_type, self.key_blob = name, key_type, key_blob
        super().__init__(f"host key {self.key.fingerprint} of {name} is not pinned")

    @classmethod
    def presented(cls, name: str, key: paramiko.PKey) -> "UnknownHostKey":
        """The error for ``key``, which the host ``name`` presented."""
        return cls(name, key.get_name(), key.asbytes())

    @property
    def key(self) -> paramiko.PKey:
        """The key the host presented."""
        return paramiko.PKey.from_type_string(self.key_type, self.key_blob)


class HostKeyNotStored(DeployError, paramiko.SSHException):
    """accept-new could not store the key it was about to trust, so it does not trust it."""


def known_hosts_name(host: str, default_port: int) -> str:
    """How known_hosts (OpenSSH and paramiko) names a host: ``name``, or ``[name]:port``."""
    name, port = split_host(host, default_port)
    return name if port == 22 else f"[{name}]:{port}"


def known_hosts_line(name: str, key: paramiko.PKey) -> str:
    """The known_hosts line that pins ``key`` for ``name`` (a :func:`known_hosts_name`)."""
    return f"{name} {key.get_name()} {key.get_base64()}"


def parse(lines: list[str], into: HostKeys | None = None) -> HostKeys:
    """known_hosts lines as paramiko's table (hashed host names included), or added to ``into``."""
    keys = HostKeys() if into is None else into
    for line in lines:
        entry = HostKeyEntry.from_line(line)
        if entry is None:
            raise ValueError(f"not a known_hosts line: {line[:60]!r}")
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    return keys


def lines_for(lines: list[str], name: str) -> list[str]:
    """The lines among ``lines`` that pin a key for ``name`` (a :func:`known_hosts_name`)."""
    return [line for line in lines if parse([line]).lookup(name) is not None]


@contextmanager
def host_keys_locked() -> Iterator[None]:
    """Hold the lock under which known_hosts of saved environments is read and rewritten."""
    with _thread_lock, _slot():
        yield


def _slot() -> ExitStack:
    created = False
    while True:
        slot = ExitStack()
        try:
            slot.enter_context(
                concurrency(
                    LOCK_NAME,
                    occupy=1,
                    lease_duration=LEASE_SECONDS,
                    strict=True,
                    timeout_seconds=LOCK_WAIT_SECONDS,
                )
            )
            return slot
        except ConcurrencySlotAcquisitionError:
            if created:
                raise
            with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=LOCK_NAME, limit=1)
                )
            created = True


def learn(env: Environment, name: str, key: paramiko.PKey) -> None:
    """Trust ``key`` as the key of ``name`` from now on: store it in the saved block.

    Raises :class:`paramiko.BadHostKeyException` when a different key was learned or pinned for
    ``name`` meanwhile, and :class:`HostKeyNotStored` when the key cannot be stored (then it is
    not trusted either: trusting a key it cannot check next time would be "accept anything").
    """
    block = env._block_document_name
    if not block:
        raise HostKeyNotStored(
            "host_key_policy accept-new needs a saved Environment block to store the key in"
        )
    try:
        with host_keys_locked():
            saved = Environment.load(block)
            if saved.host_key_policy != ACCEPT_NEW:
                raise HostKeyNotStored(
                    f"{block} no longer says host_key_policy: accept-new; "
                    "its known_hosts must pin this host's key"
                )
            known = parse(saved.known_hosts).lookup(name)
            if known is not None:  # another thread or run stored one first
                if known.get(key.get_name()) != key:
                    pinned = known.get(key.get_name()) or next(iter(known.values()))
                    raise paramiko.BadHostKeyException(name, key, pinned)
                return
            saved.known_hosts = [*saved.known_hosts, known_hosts_line(name, key)]
            saved.save(block, overwrite=True)
    except paramiko.SSHException:  # refused (a different key) or not stored: said above
        raise
    except Exception as exc:  # the Prefect API is down, the lock timed out, ...
        raise HostKeyNotStored(f"could not store it in {block}: {exc}") from None
    run_logger(__name__).info("learned host key %s for %s (accept-new)", key.fingerprint, name)


class CheckHostKey(paramiko.MissingHostKeyPolicy):
    """What to do with a key ``known_hosts`` does not list: refuse it, or learn it."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        if self.env.host_key_policy != ACCEPT_NEW:
            raise UnknownHostKey.presented(hostname, key)
        learn(self.env, hostname, key)


def trust(client: paramiko.SSHClient, env: Environment) -> None:
    """Make ``client`` check host keys the way ``env`` says: its pins, then its policy."""
    parse(env.known_hosts, into=client.get_host_keys())
    client.set_missing_host_key_policy(CheckHostKey(env))


def keep_learned(saved: Environment | None, new: Environment) -> list[str]:
    """The known_hosts lines of ``saved`` that ``new`` (from the configuration file) keeps.

    With ``host_key_policy: accept-new``, keys learned for hosts the file pins nothing for stay
    (otherwise every ``config apply`` would forget them and trust the next key seen); a host
    the file pins wins, and a host no longer listed is forgotten. A strict environment keeps
    nothing: its file is the whole truth.
    """
    if saved is None or new.host_key_policy != ACCEPT_NEW:
        return []
    pinned = parse(new.known_hosts)
    kept: list[str] = []
    for host in new.hosts:
        name = known_hosts_name(host, new.ssh_port)
        if pinned.lookup(name) is None:
            kept += [line for line in lines_for(saved.known_hosts, name) if line not in kept]
    return kept
