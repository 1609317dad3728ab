"""Wait until a restarted host serves the commit that was just deployed.

The environment's ``health_url`` (``{host}`` is replaced by the host's name) must answer HTTP 200
with the full git sha somewhere in its body. Until then, or until the timeout, it is polled four
times a second. Proxy settings from the environment are ignored: health checks go straight to the
host.
"""

import time
import urllib.error
import urllib.request

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

POLL_SECONDS = 0.25
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Unhealthy(RuntimeError):
    """A host did not serve the new commit in time."""


def probe(url: str, timeout: float) -> tuple[int | None, str]:
    """One GET of ``url``: the status (None when unreachable) and the start of the body."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return response.status, response.read(65536).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError) as exc:
        return None, str(exc)


def health_url(template: str, host: str) -> str:
    return template.replace("{host}", host.partition(":")[0])  # the SSH port is not HTTP's


@task(name="health check", task_run_name="health check {host}", cache_policy=NO_CACHE)
def health_check(url_template: str, host: str, sha: str, timeout: float) -> float:
    """Poll the host's health URL until it answers 200 with ``sha``; return the seconds it took."""
    return wait_healthy(url_template, host, sha, timeout)


def wait_healthy(url_template: str, host: str, sha: str, timeout: float) -> float:
    """What :func:`health_check` does, callable outside a task (e.g. while rolling back)."""
    url = health_url(url_template, host)
    started = time.monotonic()
    deadline = started + timeout
    status, body = None, ""
    while time.monotonic() < deadline:
        status, body = probe(url, timeout=min(5.0, timeout))
        if status == 200 and sha in body:
            waited = time.monotonic() - started
            get_run_logger().info("%s is healthy on %s after %.1f s", host, sha[:7], waited)
            return waited
        time.sleep(POLL_SECONDS)
    seen = f"HTTP {status}" if status else f"no answer ({body[:100]})"
    if status == 200:
        seen = f"HTTP 200 without {sha[:7]}: {body[:100]!r}"
    raise Unhealthy(f"{host} not healthy on {sha[:7]} after {timeout:.0f} s: last saw {seen}")
