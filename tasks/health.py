"""Wait until a restarted host serves the commit that was just deployed.

The environment's ``health_url`` (``{host}`` is replaced by the host's name) must answer HTTP 200
with the full git sha somewhere in its body. Until then, or until the timeout, it is polled: at
first every 50 ms, backing off to every 0.5 s, so a fast app is seen healthy almost as soon as it
is. Proxy settings from the environment are ignored: health checks go straight to the host.
"""

import time

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters.net import probe, split_host
from adapters.ssh import HostFailed
from adapters.task_ledger import HOOKS
from model.errors import DeployFailure

FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 0.2
BACKOFF = 1.5


class Unhealthy(HostFailed, DeployFailure):
    """A host did not serve the new commit in time."""


def health_url(template: str, host: str) -> str:
    """The health URL of one host: ``{host}`` is the host name, without the SSH port.

    >>> health_url("http://{host}:8080/demo/health", "web-1:2222")
    'http://web-1:8080/demo/health'
    """
    return template.replace("{host}", split_host(host, 0)[0])


def serves(url_template: str, host: str, sha: str, timeout: float = 2.0) -> bool:
    """Whether ``host`` answers its health URL with 200 and ``sha``, right now."""
    status, body = probe(health_url(url_template, host), timeout)
    return status == 200 and sha in body


@task(name="health check", task_run_name="health check {host}", cache_policy=NO_CACHE, **HOOKS)
def health_check(url_template: str, host: str, sha: str, timeout: float) -> float:
    """Poll the host's health URL until it answers 200 with ``sha``; return the seconds it took."""
    return wait_healthy(url_template, host, sha, timeout)


def wait_healthy(url_template: str, host: str, sha: str, timeout: float) -> float:
    """What :func:`health_check` does, callable outside a task (e.g. while rolling back)."""
    url = health_url(url_template, host)
    started = time.monotonic()
    deadline = started + timeout
    status, body, pause = None, "", FIRST_POLL_SECONDS
    while True:
        left = deadline - time.monotonic()
        status, body = probe(url, timeout=max(0.1, min(5.0, left)))
        if status == 200 and sha in body:
            waited = time.monotonic() - started
            get_run_logger().info("%s is healthy on %s after %.2f s", host, sha[:7], waited)
            return waited
        if time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
        pause = min(MAX_POLL_SECONDS, pause * BACKOFF)
    raise Unhealthy(
        host,
        "health check",
        f"not serving {sha[:7]} after {timeout:.0f} s at {url}; {last_seen(status, body, sha)}",
    )


def last_seen(status: int | None, body: str, sha: str) -> str:
    """What the last probe saw, and what that most likely means."""
    if status is None:
        return f"no answer ({body[:100]}): is the app listening there?"
    if status == 200:
        return f"it answers 200 without {sha[:7]} ({body[:100]!r}): it still runs another commit"
    return f"it answers HTTP {status}: the app is up but not healthy (see its log on the host)"
