"""Tests of server/api/routes/devices.py: devices seen and their latest readings."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from tests.server.data import NOW, climate


def test_no_devices_yet(client: TestClient) -> None:
    """Test that an empty store lists no devices and still reports the server time."""
    body = client.get("/api/v1/devices").json()
    assert body["data"] == [] and body["count"] == 0 and body["now"] == NOW


def test_devices_seen_with_stale_flag(client: TestClient, store: SqliteStore) -> None:
    """Test that each device is listed with its counts, and marked stale past stale_after_s."""
    store.write(climate("fresh-1", NOW - 100) + climate("fresh-1", NOW - 10))
    store.write(climate("quiet-2", NOW - 3600, org="odense"))
    body = client.get("/api/v1/devices").json()
    by_id = {d["device"]: d for d in body["data"]}
    assert body["count"] == 2
    fresh, quiet = by_id["fresh-1"], by_id["quiet-2"]
    assert (fresh["org"], fresh["readings"], fresh["stale"]) == ("aarhus", 6, False)
    assert (fresh["first_seen"], fresh["last_seen"], fresh["age_s"]) == (NOW - 100, NOW - 10, 10)
    assert fresh["last_seen_iso"] == "2025-06-15T15:06:30.000Z"
    assert (quiet["org"], quiet["stale"]) == ("odense", True)


def test_latest_returns_one_reading_per_series(client: TestClient, store: SqliteStore) -> None:
    """Test that latest gives the newest value of each quantity with its unit and ISO time."""
    store.write(climate("dev-a", NOW - 20, temperature=20.0) + climate("dev-a", NOW - 2, temperature=22.5))
    body = client.get("/api/v1/devices/dev-a/latest").json()
    by_q = {r["quantity"]: r for r in body["readings"]}
    assert set(by_q) == {"temperature", "humidity", "pressure"}
    assert by_q["temperature"] == {
        "sensor": "bme280",
        "quantity": "temperature",
        "unit": "Cel",
        "time": NOW - 2,
        "time_iso": "2025-06-15T15:06:38.000Z",
        "value": 22.5,
    }
    assert by_q["pressure"]["unit"] == "hPa"


def test_latest_of_unknown_device_is_404_naming_known_ones(client: TestClient, store: SqliteStore) -> None:
    """Test that a device that never reported is a 404 naming the devices seen."""
    empty = client.get("/api/v1/devices/ghost-9/latest")
    assert empty.status_code == 404 and "suitcase demo" in empty.json()["detail"]
    store.write(climate("dev-a", NOW - 2))
    missing = client.get("/api/v1/devices/ghost-9/latest")
    assert missing.status_code == 404 and "dev-a" in missing.json()["detail"]


def test_malformed_device_id_is_422(client: TestClient) -> None:
    """Test that a device id that is not a slug is rejected before reaching the store."""
    response = client.get("/api/v1/devices/Bad_Id/latest")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "device"]
