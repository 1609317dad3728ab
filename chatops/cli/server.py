"""Finding the chatops this CLI talks to, and who it is there, without loading Prefect.

Chat commands need the gateway and the person's own token, nothing else:

- the token: ``CHATOPS_TOKEN`` (scripts, CI), else the one ``chatops login`` stored in
  ``${XDG_CONFIG_HOME:-~/.config}/chatops/credentials.json`` (mode 0600);
- the gateway: ``CHATOPS_GATEWAY_URL``, else the one stored with the token, else the one that
  ``chatops up`` on this machine recorded in ``$CHATOPS_HOME/up.json``.

``config apply`` talks to the Prefect API itself (``PREFECT_API_URL`` or ``up.json``) with the
API's credential (``PREFECT_API_AUTH_STRING``, else ``$CHATOPS_HOME/secrets/prefect-api-auth``);
it is run by whoever runs chatops. The CLI never starts a server of its own.
"""

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.home import home
from adapters.net import direct
from model.errors import DeployError

START_HINT = "Start it with: scripts/up.sh   (or: chatops up)"
LOGIN_HINT = (
    "not logged in: get a token from whoever runs chatops (`chatops users add NAME` there), "
    "then run: chatops login"
)
PREFECT_API_AUTH = "prefect-api-auth"
"""The secret (:meth:`adapters.home.Home.secret`) the Prefect server that ``chatops up`` starts
wants from every API client, and the password of its UI."""


class NoServer(DeployError):
    """No chatops server can be found, or no credentials; the message says what to do (one
    line)."""


class GatewayError(DeployError):
    """The gateway could not be reached or refused the CLI's token."""


class TokenRefused(GatewayError):
    """The gateway does not know the token (revoked, or made for another gateway)."""


@dataclass(frozen=True)
class Gateway:
    """A gateway and the token the CLI shows it."""

    url: str
    token: str

    def ask(
        self, method: str, path: str, body: dict | None = None, timeout: float = 60
    ) -> tuple[int, dict[str, Any]]:
        """One call to the gateway's CLI endpoints: (HTTP status, JSON answer).
        :class:`GatewayError` when it does not answer or refuses the token."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with direct.open(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise TokenRefused(
                    f"the gateway at {self.url} refused your token (revoked, or made for another "
                    "gateway?): get a new one and run: chatops login"
                ) from None
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise GatewayError(f"the gateway at {self.url} did not answer ({reason})") from None


def credentials_file() -> Path:
    """Where ``chatops login`` keeps the token and its gateway."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "chatops" / "credentials.json"


def stored_credentials() -> dict[str, str]:
    """What ``chatops login`` stored; {} before it ever ran (or if the file is unreadable)."""
    try:
        data = json.loads(credentials_file().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def store_credentials(gateway_url: str, token: str) -> Path:
    """Keep the token for this user alone (directory 0700, file 0600); the file's path."""
    path = credentials_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"gateway_url": gateway_url, "token": token}, out, indent=2)
        out.write("\n")
    tmp.replace(path)
    return path


def write_up_file(path: Path, *, pid: int, api_url: str, ui_url: str, gateway_url: str) -> None:
    """Record where ``chatops up`` runs (called by it once everything answers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "api_url": api_url, "ui_url": ui_url, "gateway_url": gateway_url}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


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


def local_up() -> dict[str, object]:
    """What ``chatops up`` on this machine recorded; :class:`NoServer` when it is not running."""
    up_file = home().up_file
    try:
        record = json.loads(up_file.read_text())
    except FileNotFoundError:
        raise NoServer(
            f"chatops is not running on this machine (no {up_file}). {START_HINT}"
        ) from None
    except (OSError, ValueError):
        record = {}
    pid = record.get("pid") if isinstance(record, dict) else None
    if not isinstance(pid, int) or not alive(pid):
        raise NoServer(f"chatops is not running (pid {pid} in {up_file} is gone). {START_HINT}")
    return record


def gateway_url(stored: dict[str, str] | None = None) -> str:
    """The gateway to talk to: ``CHATOPS_GATEWAY_URL``, the logged-in one, or the local one."""
    stored = stored_credentials() if stored is None else stored
    url = os.environ.get("CHATOPS_GATEWAY_URL") or stored.get("gateway_url")
    if not url:
        url = str(local_up().get("gateway_url") or "")
    if not url:
        raise NoServer(f"no gateway address is known. {START_HINT}")
    return url.rstrip("/")


def find_gateway() -> Gateway:
    """The gateway and this person's token; :class:`NoServer` (one line) when either is missing."""
    stored = stored_credentials()
    token = os.environ.get("CHATOPS_TOKEN") or stored.get("token", "")
    if not token:
        raise NoServer(LOGIN_HINT)
    return Gateway(gateway_url(stored), token)


def find_prefect_api() -> str:
    """The Prefect API that ``config apply`` writes to: ``PREFECT_API_URL`` or the local one."""
    api = os.environ.get("PREFECT_API_URL") or str(local_up().get("api_url") or "")
    if not api:
        raise NoServer(f"no Prefect API address is known. {START_HINT}")
    return api.rstrip("/")
