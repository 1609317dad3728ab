"""Fake deploy targets: one network namespace per host, with sshd, a private /srv/app and Tomcat.

Each host is a network namespace ``tb<owner pid hex>-<N>`` joined to the root namespace by the
veth ``vr-<name>``; the host answers on ``10.213.N.2`` (root side ``10.213.N.1``), port 22 (sshd,
root login with the test key) and 8080 (Tomcat, once ``/srv/app/bin/restart-tomcat`` ran). Its
``/srv/app`` is a bind of a temp dir on the root filesystem (``TestHost.root``), visible only
inside the host's own mount namespace, so every host has the same deploy path but its own files.

SAFETY: a blackhole route for 10.213.0.0/16 sits in the root namespace while any host exists, so
traffic for a host whose link is down fails locally instead of leaving the machine.

Normally used through the pytest fixtures in ``tests.testbed.fixtures``; ``netns_hosts()`` is the
same thing as a context manager.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
RESTART_TOMCAT = REPO_ROOT / "examples" / "hosts" / "restart-tomcat.sh"
DEPLOY_PATH = "/srv/app"
NAME_PREFIX = "tb"
SUBNET = "10.213.0.0/16"
_NAME_RE = re.compile(rf"^{NAME_PREFIX}([0-9a-f]+)-(\d+)$")
_ALLOC_LOCK = Path("/run/lock/chatops-testbed-alloc.lock")
_FIRST_OCTET = 11
_next_octet = _FIRST_OCTET  # advances through the session: a test never reuses a recent address

REQUIRED_TOOLS = (
    "ip",
    "nsenter",
    "unshare",
    "flock",
    "nft",
    "ssh-keygen",
    "/usr/sbin/sshd",
    "java",
    "git",
    "/usr/share/tomcat10/bin/catalina.sh",
)


def sh(
    args: Sequence[str], timeout: float = 60, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), capture text output; raise with its output when it fails."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode:
        raise RuntimeError(
            f"{list(args)} -> rc {proc.returncode}\n"
            f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        )
    return proc


@dataclass(frozen=True)
class SshKey:
    """An ed25519 key pair without passphrase: ``.private`` / ``.public`` are file paths."""

    private: Path
    public: Path

    @property
    def private_text(self) -> str:
        """The private key in OpenSSH format, e.g. for a SecretStr field of an Environment."""
        return self.private.read_text()


def make_ssh_key(directory: Path) -> SshKey:
    """Create ``directory/id_ed25519`` (+ ``.pub``) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / "id_ed25519"
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "chatops-testbed", "-f", str(private)])
    return SshKey(private=private, public=private.with_name("id_ed25519.pub"))


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (init here reaps orphans slowly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed; return its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class TestHost:
    """One fake host: put ``.address`` in Environment.hosts, pin its key with ``.known_hosts_line``.

    ``.run(cmd)`` runs a command as if logged in on the host (its network and mount namespace, so
    ``/srv/app`` is this host's) without going through SSH; ``.root`` is the same directory seen
    from the test process. Faults: ``kill_sshd()`` (connections refused), ``link_down()``
    (connects hang until the client's timeout), ``drop_ssh()`` (packets to :22 dropped),
    ``throttle(rate)`` (a slow link), each with its way back (``start_sshd()``, ``link_up()``,
    ``accept_ssh()``, ``unthrottle()``); ``new_host_key()`` (the host was rebuilt).
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, ns: str, octet: int, host_dir: Path) -> None:
        self.ns = ns
        self.octet = octet
        self.address = f"10.213.{octet}.2"
        self.host_dir = host_dir  # sshd key/config/log, holder.pid
        self.root = host_dir / "root"  # what the host sees as /srv/app
        self.holder_pid = int((host_dir / "holder.pid").read_text())
        self._read_host_key()

    def _read_host_key(self) -> None:
        key = (self.host_dir / "ssh_host_ed25519_key.pub").read_text().split()
        self.host_key = f"{key[0]} {key[1]}"
        self.known_hosts_line = f"{self.address} {self.host_key}"

    def new_host_key(self) -> None:
        """Give the host a new SSH host key, as a reinstall (or an impostor) would: sshd is
        restarted with it, and ``.host_key`` / ``.known_hosts_line`` name the new key."""
        self.kill_sshd()
        private = self.host_dir / "ssh_host_ed25519_key"
        private.unlink()
        private.with_suffix(".pub").unlink()
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
        self._read_host_key()
        self.start_sshd()

    def __repr__(self) -> str:
        return f"TestHost({self.ns}, {self.address})"

    @property
    def veth(self) -> str:
        """Root-namespace side of the host's link."""
        return f"vr-{self.ns}"

    @property
    def sshd_pid(self) -> int | None:
        """Pid of the listening sshd, None when it is not running."""
        try:
            pid = int((self.host_dir / "sshd.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def run(
        self, cmd: str | Sequence[str], timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on the host (a string goes to ``sh -c``); returns the CompletedProcess."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        enter = ["nsenter", "-t", str(self.holder_pid), "-m", "-n", "--"]
        return sh(enter + argv, timeout=timeout, check=check)

    def url(self, path: str, port: int = 8080) -> str:
        """``http://<address>:<port><path>``."""
        return f"http://{self.address}:{port}{path}"

    def http_get(self, path: str, port: int = 8080, timeout: float = 2) -> tuple[int, str]:
        """GET ``path`` from the host: (status, body). HTTP errors are returned, not raised;
        a connection error or timeout raises (``OSError``: URLError, ConnectionError, TimeoutError).
        Proxy environment variables are ignored."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url(path, port), timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")

    def wait_http(
        self, path: str, contains: str = "", timeout: float = 30, port: int = 8080
    ) -> str:
        """Poll GET ``path`` until it answers 200 with ``contains`` in the body; return the body.
        Raises TimeoutError with the last answer/error after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                status, body = self.http_get(path, port=port, timeout=2)
                if status == 200 and contains in body:
                    return body
                last = (status, body[:200])
            except OSError as err:
                last = err
            time.sleep(0.1)
        raise TimeoutError(
            f"{self.url(path, port)}: no 200 containing {contains!r} "
            f"within {timeout} s; last: {last!r}"
        )

    def kill_sshd(self) -> None:
        """Stop the host's sshd: new connections are refused at once (open sessions live on)."""
        pid = self.sshd_pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not process_alive(pid), timeout=5)

    def start_sshd(self) -> None:
        """Start the host's sshd again after ``kill_sshd()``."""
        cfg, log = self.host_dir / "sshd_config", self.host_dir / "sshd.log"
        self.run(["/usr/sbin/sshd", "-f", str(cfg), "-E", str(log)], check=True)
        if not wait_until(lambda: self.sshd_pid is not None, timeout=5):
            raise RuntimeError(f"sshd of {self} did not come back; see {log}")

    def link_down(self) -> None:
        """Take the host's interface down: the host stops answering, connects hang until timeout."""
        sh(["ip", "-n", self.ns, "link", "set", "eth0", "down"])

    def link_up(self) -> None:
        """Undo ``link_down()``."""
        sh(["ip", "-n", self.ns, "link", "set", "eth0", "up"])

    def drop_ssh(self) -> None:
        """Drop every packet to the host's port 22 (new and established SSH connections hang)."""
        nft = ["ip", "netns", "exec", self.ns, "nft"]
        sh(nft + ["add", "table", "inet", "testbed_fault"])
        sh(
            nft
            + [
                "add",
                "chain",
                "inet",
                "testbed_fault",
                "input",
                "{ type filter hook input priority 0; policy accept; }",
            ]
        )
        sh(nft + ["add", "rule", "inet", "testbed_fault", "input", "tcp", "dport", "22", "drop"])

    def accept_ssh(self) -> None:
        """Undo ``drop_ssh()``."""
        sh(
            ["ip", "netns", "exec", self.ns, "nft", "delete", "table", "inet", "testbed_fault"],
            check=False,
        )

    def throttle(self, rate: str = "4mbit") -> None:
        """Slow what the host receives to ``rate`` (tc tbf on the root side of its link)."""
        sh(
            [
                "tc",
                "qdisc",
                "replace",
                "dev",
                self.veth,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kbit",
                "latency",
                "400ms",
            ]
        )

    def unthrottle(self) -> None:
        """Undo ``throttle()``."""
        sh(["tc", "qdisc", "del", "dev", self.veth, "root"], check=False)

    def pids(self) -> list[int]:
        """Every process in the host's network namespace (sshd, sessions, Tomcat, ...)."""
        out = sh(["ip", "netns", "pids", self.ns], check=False).stdout
        return [int(p) for p in out.split()]

    def log_tails(self, lines: int = 30) -> str:
        """The end of the host's sshd and Tomcat logs, for failure reports."""
        parts = []
        for log in (self.host_dir / "sshd.log", self.root / "tomcat" / "logs" / "catalina.out"):
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {self} {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)


# --- names, addresses and leftovers -------------------------------------------------------------


def _link_names() -> list[str]:
    out = sh(["ip", "-o", "link", "show"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def live_namespaces() -> list[str]:
    """Names of all test-bed network namespaces on the machine (any session's)."""
    out = sh(["ip", "netns", "list"]).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if _NAME_RE.match(n)]


def live_veths() -> list[str]:
    """Names of all test-bed veths (``vr-tb...``) in the root namespace."""
    return [n for n in _link_names() if n.startswith("vr-") and _NAME_RE.match(n[3:])]


def blackhole_present() -> bool:
    """True while the 10.213.0.0/16 blackhole route is in the root namespace."""
    return bool(sh(["ip", "route", "show", "type", "blackhole", SUBNET]).stdout.strip())


def _owner_alive(name: str) -> bool:
    match = _NAME_RE.match(name)
    if not match:
        return False
    pid = int(match.group(1), 16)
    if pid == os.getpid():
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return process_alive(pid) and (b"python" in cmdline or b"pytest" in cmdline)


def destroy(names: Sequence[str]) -> None:
    """Kill everything in these hosts' namespaces, delete their veths and namespaces."""
    if names:
        sh([str(SCRIPTS / "destroy_netns_host.sh"), *names], timeout=60)


def preclean() -> list[str]:
    """Remove hosts left by aborted runs (owner process gone); hosts of live sessions stay."""
    stale = {n for n in live_namespaces() if not _owner_alive(n)}
    stale |= {link[3:] for link in live_veths() if not _owner_alive(link[3:])}
    destroy(sorted(stale))
    return sorted(stale)


def _octets_in_use() -> set[int]:
    out = sh(["ip", "-o", "-4", "addr", "show"]).stdout
    used = {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.", out)}
    names = [_NAME_RE.match(n) for n in live_namespaces()]
    return used | {int(m.group(2)) for m in names if m}


def _allocate_octet() -> int:
    """Next free N (1..254) from the session's cursor; call with the allocation lock held."""
    global _next_octet
    used = _octets_in_use()
    for step in range(254):
        octet = (_next_octet - 1 + step) % 254 + 1
        if octet not in used:
            _next_octet = octet % 254 + 1
            return octet
    raise RuntimeError("no free 10.213.N.0/24 left for a test host")


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    with open(_ALLOC_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_host(ssh_key: SshKey, workdir: Path, owner_pid: int | None = None) -> TestHost:
    """Bring up one host (dir under ``workdir``); the caller must ``destroy([host.ns])`` it.

    ``owner_pid`` (default: this process) goes into the name; ``preclean()`` removes hosts whose
    owner is gone.
    """
    with _allocation_lock():
        octet = _allocate_octet()
        ns = f"{NAME_PREFIX}{owner_pid or os.getpid():x}-{octet}"
        host_dir = workdir / ns
        try:
            sh(
                [
                    str(SCRIPTS / "make_netns_host.sh"),
                    ns,
                    str(octet),
                    str(ssh_key.public),
                    str(host_dir),
                ],
                timeout=30,
            )
        except BaseException:
            destroy([ns])
            raise
    return TestHost(ns, octet, host_dir)


def install_restart_script(host: TestHost) -> None:
    """Put examples/hosts/restart-tomcat.sh on the host as /srv/app/bin/restart-tomcat."""
    target = host.root / "bin" / "restart-tomcat"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RESTART_TOMCAT, target)
    target.chmod(0o755)


@contextlib.contextmanager
def netns_hosts(count: int, ssh_key: SshKey, workdir: Path) -> Iterator[list[TestHost]]:
    """Bring up ``count`` hosts (host dirs under ``workdir``); tear all of them down on exit.

    Teardown kills every process in each namespace (Tomcat too), deletes veths and namespaces,
    and drops the blackhole route when no host (of any session) is left. ``workdir`` itself is
    left to the caller.
    """
    hosts: list[TestHost] = []
    try:
        for _ in range(count):
            hosts.append(make_host(ssh_key, workdir))
            install_restart_script(hosts[-1])
        yield hosts
    finally:
        destroy([h.ns for h in hosts])


def missing_requirements() -> list[str]:
    """What this machine lacks for the test bed (empty when ready): root and tools."""
    missing = [] if os.geteuid() == 0 else ["root (the test bed creates network namespaces)"]
    missing += [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    return missing
