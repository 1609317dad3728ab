"""``chatops up`` as a child process, for tests that need the whole system with its UI."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from adapters.net import free_port
from chatops.settings import DEPLOYMENTS

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def basic_auth(auth: str | None) -> dict[str, str]:
    """The header a Prefect client sends with ``PREFECT_API_AUTH_STRING=auth``."""
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}


def get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=basic_auth(auth))
    with _opener.open(request, timeout=5) as response:
        return response.status, response.read()


def post_json(url: str, body: dict, auth: str | None = None) -> object:
    """POST ``body`` to a Prefect API URL with credential ``auth``; the JSON answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **basic_auth(auth)},
    )
    with _opener.open(request, timeout=5) as response:
        return json.loads(response.read())


def wait_for(predicate: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


class ChatopsUp:
    """``chatops up --port <free>`` with its own CHATOPS_HOME, stopped (Ctrl-C) on exit.

    ``.base`` is the UI address, ``.api`` the API, ``.auth`` its credential (read from
    CHATOPS_HOME, as ``chatops config apply`` does); ``.log`` has everything it printed. Its CLI
    calls (:meth:`cli`) act as a user made with ``chatops users add`` on first use, with that
    user's token (``CHATOPS_TOKEN``) and no Prefect setting.
    """

    def __init__(self, home: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        self.home = home
        self.port = free_port()
        self.gateway_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.base}/api"
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.log = home.parent / f"up-{self.port}.log"
        self.extra_env = env or {}
        self.args = list(args)
        self.process: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}
        self.ready_seconds = 0.0
        """From its start until it said "chatops is up"."""

    def __enter__(self) -> "ChatopsUp":
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            CHATOPS_HOME=str(self.home),
            CHATOPS_GATEWAY_PORT=str(self.gateway_port),
            DO_NOT_TRACK="1",
            **self.extra_env,
        )
        started = time.monotonic()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatops.cli", "up", "--port", str(self.port), *self.args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if not wait_for(lambda: "chatops is up" in self.output(), 120):
            self.__exit__()
            raise RuntimeError(f"chatops up did not start:\n{self.output()}")
        self.ready_seconds = time.monotonic() - started
        if not wait_for(self.serving, 60):
            self.__exit__()
            raise RuntimeError(f"the flows were not served:\n{self.output()}")
        return self

    @property
    def auth(self) -> str:
        return (self.home / "secrets" / "prefect-api-auth").read_text().strip()

    def prefect_settings(self) -> dict:
        """For ``temporary_settings``: Prefect clients in the test talk to this server."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

        return {PREFECT_API_URL: self.api, PREFECT_API_AUTH_STRING: self.auth}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def token(self, user: str) -> str:
        """``user``'s CLI token, made with ``chatops users add`` on first use (a token an earlier
        ``chatops up`` on the same home made is revoked first: only its hash was kept)."""
        if user not in self.tokens:
            chatops = str(Path(sys.executable).with_name("chatops"))
            subprocess.run(
                [chatops, "users", "remove", user],
                env=self.cli_env(),
                capture_output=True,
                timeout=60,
            )
            added = subprocess.run(
                [chatops, "users", "add", user],
                env=self.cli_env(),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            self.tokens[user] = added.stdout.strip()
        return self.tokens[user]

    def cli_env(self, user: str | None = None, **extra: str) -> dict[str, str]:
        """The environment of a person's shell: CHATOPS_HOME, and ``user``'s token if given;
        no Prefect setting, no stored login."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
        clean.update(CHATOPS_HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "no-login"))
        if user is not None:
            clean.update(USER=user, LOGNAME=user, CHATOPS_TOKEN=self.token(user))
        clean.update(extra)
        return clean

    def cli_process(self, *args: str, user: str = "tester") -> subprocess.Popen[str]:
        """``chatops ARGS`` started in the background (see :meth:`cli`); output merged."""
        chatops = Path(sys.executable).with_name("chatops")
        return subprocess.Popen(
            [str(chatops), *args],
            env=self.cli_env(user),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def child(self, module: str) -> int:
        """The pid of the child of ``chatops up`` that runs ``python -m <module>``."""
        assert self.process is not None
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(fields[1]) == self.process.pid and module.encode() in cmdline:
                return int(stat.parent.name)
        raise LookupError(f"chatops up runs no {module}")

    def cli(
        self,
        *args: str,
        user: str = "tester",
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``chatops ARGS`` in a fresh process, as CLI user ``user`` (its token in
        ``CHATOPS_TOKEN``), finding this server the way a person's shell does (through
        CHATOPS_HOME alone)."""
        chatops = Path(sys.executable).with_name("chatops")
        return subprocess.run(
            [str(chatops), *args],
            env=self.cli_env(user, **(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def serving(self) -> bool:
        found = post_json(f"{self.api}/deployments/filter", {}, self.auth)
        return sorted(d["name"] for d in found) == ["chatops"] * len(DEPLOYMENTS)

    def stop(self) -> int:
        """Ctrl-C, as a person would; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
