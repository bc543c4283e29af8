"""Tests of server/api/routes/health.py."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from tests.server.data import NOW, climate


def test_health_counts_readings(client: TestClient, store: SqliteStore) -> None:
    """Test that health is ok and counts the readings the gateway wrote."""
    assert client.get("/api/v1/health").json() == {"status": "ok", "readings": 0}
    store.write(climate("dev-a", NOW - 5))
    assert client.get("/api/v1/health").json() == {"status": "ok", "readings": 3}
