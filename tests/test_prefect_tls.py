"""Prefect API clients share one verifying TLS context per process (:mod:`adapters.prefect_tls`)."""

import ssl

import prefect.client.orchestration
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

from adapters import prefect_tls

API = "http://127.0.0.1:9/api"  # never asked: a client connects on its first request


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Every TLS context made from now on, Prefect's client module back as Prefect ships it."""
    contexts: list[ssl.SSLContext] = []
    make = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        contexts.append(make(*args, **kwargs))  # type: ignore[arg-type]
        return contexts[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    monkeypatch.setattr(prefect.client.orchestration, "ssl", ssl)
    prefect_tls._verifying.cache_clear()
    yield contexts
    prefect_tls._verifying.cache_clear()


def test_clients_share_the_context_made_once_instead_of_one_each(
    made: list[ssl.SSLContext],
) -> None:
    for _ in range(3):
        PrefectClient(API)
    assert len(made) == 3, "as Prefect ships it: one CA bundle loaded per client"

    prefect_tls.share()
    assert len(made) == 4, "the shared one, made at once"
    for _ in range(3):
        PrefectClient(API)
    assert len(made) == 4


def test_a_client_that_skips_verification_gets_a_context_of_its_own(
    made: list[ssl.SSLContext],
) -> None:
    prefect_tls.share()
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        PrefectClient(API)
        PrefectClient(API)
    shared, *own = made
    assert len(own) == 2 and all(c.verify_mode == ssl.CERT_NONE for c in own)
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
