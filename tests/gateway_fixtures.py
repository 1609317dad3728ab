"""pytest plugin (loaded by tests/conftest.py): the fixtures of the gateway tests, a gateway on
the test configuration of tests/gateway_support.py and a user who types into Slack.

A module whose tests want no lock or freeze left behind by the one before marks them
``pytest.mark.usefixtures("no_locks")``. The imports wait until a fixture is used: pytest's own
process, which only hands tests to its workers, never loads the gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from tests.fakes.slack_api import FakeSlack
    from tests.gateway_support import Chat, RecordingCreator


@pytest.fixture(scope="module")
def configured(prefect_server: None) -> None:
    from tests.gateway_support import clear_locks, save_config

    save_config()
    clear_locks()  # of tests before this module


@pytest.fixture
def no_locks(configured: None) -> Iterator[None]:
    """Each test leaves no lock or freeze behind for the next."""
    from tests.gateway_support import clear_locks

    yield
    clear_locks()


@pytest.fixture
def starter() -> RecordingCreator:
    from tests.gateway_support import RecordingCreator

    return RecordingCreator()


@pytest.fixture
def client(starter: RecordingCreator) -> Iterator[TestClient]:
    from tests.gateway_support import gateway

    with gateway(starter) as test_client:
        yield test_client


@pytest.fixture
def chat(client: TestClient, fake_slack: FakeSlack) -> Iterator[Chat]:
    from tests.gateway_support import Chat

    yield Chat(client, fake_slack)
    assert fake_slack.violations == []
