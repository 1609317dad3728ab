"""One TLS context per CA file for all of a process's Prefect API clients.

Prefect's API client makes a new verifying TLS context for every client it creates, loading the
whole CA bundle each time (certifi's: about 25 ms of CPU), whether the API is reached over TLS or
not. Counted with a wrapper around ``ssl.create_default_context`` while
``tests/test_deploy_e2e.py`` ran two deploys: each deploy's flow process made 7 (0.2 CPU-s),
the runner 15. A verifying context is not changed once made, so one per CA file can serve every
client of the process, and every flow process forked from one that made it.
"""

import functools
import ssl
from typing import Any

import certifi
import prefect.client.orchestration
from prefect.settings import PREFECT_API_SSL_CERT_FILE


class _SharedContexts:
    """The ``ssl`` module as Prefect's client module sees it after :func:`share`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    def create_default_context(self, cafile: str | None = None, **kwargs: Any) -> ssl.SSLContext:
        if cafile and not kwargs:
            return _verifying(cafile)
        # Without a CA file Prefect makes one to change (PREFECT_API_TLS_INSECURE_SKIP_VERIFY).
        return ssl.create_default_context(cafile=cafile, **kwargs)


@functools.cache
def _verifying(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def share() -> None:
    """From now on, this process's Prefect clients share one context per CA file; the one they
    use by default is made now (so processes forked after this have it already)."""
    prefect.client.orchestration.ssl = _SharedContexts()  # type: ignore[assignment]
    _verifying(PREFECT_API_SSL_CERT_FILE.value() or certifi.where())
