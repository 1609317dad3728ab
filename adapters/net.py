"""How every layer names and reaches a machine: ``host[:port]`` names, and direct HTTP.

Light on purpose (standard library only): the CLI uses it without loading Prefect.

    >>> split_host("web-1:2222", 22)
    ('web-1', 2222)
    >>> split_host("web-1", 22)
    ('web-1', 22)
"""

import socket
import urllib.error
import urllib.request

direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""A urllib opener that ignores ``http_proxy`` and friends: our own services (127.0.0.1) and the
hosts' health URLs are reached directly; a proxy would not know them."""


def split_host(host: str, default_port: int) -> tuple[str, int]:
    """``web-1:2222`` → ``("web-1", 2222)``; ``web-1`` → ``("web-1", default_port)``."""
    name, colon, port = host.rpartition(":")
    return (name, int(port)) if colon else (host, default_port)


def probe(url: str, timeout: float) -> tuple[int | None, str]:
    """One direct GET of ``url``: the status (None when unreachable) and the start of the body
    (or why there was no answer)."""
    try:
        with direct.open(url, timeout=timeout) as response:
            return response.status, response.read(65536).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError) as exc:
        return None, str(exc)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the system's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
