"""Fixtures of the gateway tests: brokers and stores (a real embedded broker, a real Mosquitto)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwtools import FlakyStore

from suitcase.broker import EmbeddedBroker, MosquittoBroker, find_mosquitto


@pytest.fixture(scope="module")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker  # type: ignore[misc]


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if find_mosquitto() is None:
        if os.environ.get("SUITCASE_REQUIRE_SERVICES") == "1":
            pytest.fail("mosquitto is not installed and SUITCASE_REQUIRE_SERVICES=1")
        pytest.skip("mosquitto is not installed")
    with MosquittoBroker(tmp_path / "mosquitto") as broker:
        yield broker  # type: ignore[misc]


@pytest.fixture
def client_id() -> str:
    """A client id of its own per test, so sessions on a shared broker never mix."""
    return f"gw-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FlakyStore]:
    s = FlakyStore(tmp_path / "store.db")
    yield s
    s.gate.set()
    s.close()
