"""The real Mosquitto broker for tests marked ``mosquitto``: one per session, loopback, free port.

It loads deploy/mosquitto/suitcase.conf through :class:`suitcase.broker.MosquittoBroker`, exactly
as the demo and production do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from suitcase.broker import EmbeddedBroker, MosquittoBroker, find_mosquitto
from tests.services import require_service

__all__ = ["embedded_broker", "mosquitto"]


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A running Mosquitto 2 with the project's config."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto mosquitto-clients")
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture()
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """A fresh embedded (amqtt) broker for one test."""
    with EmbeddedBroker() as broker:
        yield broker  # type: ignore[misc]
