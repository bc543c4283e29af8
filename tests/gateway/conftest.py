"""Fixtures of the gateway tests; the brokers come from tests/services/mosquitto.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.gwtools import FlakyStore


@pytest.fixture
def client_id() -> str:
    """A client id of its own per test, so sessions on a shared broker never mix."""
    return f"gw-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FlakyStore]:
    """A real SQLite store that fails or blocks on demand."""
    s = FlakyStore(tmp_path / "store.db")
    yield s
    s.gate.set()
    s.close()
