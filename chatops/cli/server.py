"""Finding the chatops server this CLI talks to, without loading Prefect.

``chatops up`` records where it runs in ``$CHATOPS_HOME/up.json`` (its pid, the Prefect API and
UI, the gateway) and keeps the CLI's token in ``$CHATOPS_HOME/cli-token`` (mode 0600) and the
Prefect API's credential in ``$CHATOPS_HOME/secrets/prefect-api-auth`` (mode 0600). The CLI
reads them; ``PREFECT_API_URL``, ``CHATOPS_GATEWAY_URL``, ``CHATOPS_CLI_TOKEN`` and
``PREFECT_API_AUTH_STRING`` override them (a server on another machine). It never starts a server
of its own.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tasks.home import home

START_HINT = "Start it with: scripts/up.sh   (or: chatops up)"
PREFECT_API_AUTH = "prefect-api-auth"
"""The secret (:meth:`tasks.home.Home.secret`) the Prefect server that ``chatops up`` starts
wants from every API client, and the password of its UI."""


class NoServer(Exception):
    """No chatops server can be found; the message says what to do (one line)."""


@dataclass(frozen=True)
class Server:
    """Where the running chatops is: its Prefect API and UI, its gateway, the CLI token."""

    api_url: str
    ui_url: str
    gateway_url: str
    token: str


def write_up_file(path: Path, *, pid: int, api_url: str, ui_url: str, gateway_url: str) -> None:
    """Record where ``chatops up`` runs (called by it once everything answers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "api_url": api_url, "ui_url": ui_url, "gateway_url": gateway_url}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def cli_token(create: bool = False) -> str:
    """The CLI's token (``$CHATOPS_HOME/cli-token``), made on first use when ``create``."""
    path = home().root / "cli-token"
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(os.urandom(32).hex() + "\n")
    return path.read_text().strip() if path.exists() else ""


def prefect_api_auth() -> str:
    """The credential for the Prefect API: ``PREFECT_API_AUTH_STRING`` when set (a server of
    one's own), else the one ``chatops up`` made; "" when there is neither."""
    return os.environ.get("PREFECT_API_AUTH_STRING") or home().secret(PREFECT_API_AUTH)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_server(gateway: bool = True) -> Server:
    """The server to talk to; :class:`NoServer` when there is none.

    ``gateway=False`` (``config apply``) needs only the Prefect API.
    """
    up_file = home().up_file
    record: dict[str, object] = {}
    if up_file.exists():
        try:
            record = json.loads(up_file.read_text())
        except ValueError:
            record = {}
    explicit = os.environ.get("CHATOPS_GATEWAY_URL") or (
        not gateway and os.environ.get("PREFECT_API_URL")
    )
    if not explicit:
        pid = record.get("pid")
        if not record:
            raise NoServer(f"chatops is not running on this machine (no {up_file}). {START_HINT}")
        if not isinstance(pid, int) or not alive(pid):
            raise NoServer(f"chatops is not running (pid {pid} in {up_file} is gone). {START_HINT}")
    api = os.environ.get("PREFECT_API_URL") or str(record.get("api_url") or "")
    gateway_url = os.environ.get("CHATOPS_GATEWAY_URL") or str(record.get("gateway_url") or "")
    if not api or (gateway and not gateway_url):
        raise NoServer(f"no Prefect API or gateway address is known. {START_HINT}")
    ui = str(record.get("ui_url") or api.removesuffix("/api"))
    token = os.environ.get("CHATOPS_CLI_TOKEN") or cli_token()
    return Server(api.rstrip("/"), ui.rstrip("/"), gateway_url.rstrip("/"), token)
