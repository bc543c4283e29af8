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


def test_pages_hold_registered_then_seen_devices_once_with_counts(
    client: TestClient, store: SqliteStore
) -> None:
    """Test that pages of the fleet list hold every registered device (by id, with its store
    summary, revoked ones marked) and then every device seen but not registered, each once; that a
    revoked device and one registered under another organisation are not listed again as
    unregistered; and that the count and the ``registered``, ``org`` and ``online`` filters agree."""
    from sqlmodel import Session

    from server.tables import DeviceRow, OrganisationRow

    engine = client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        aarhus = OrganisationRow(slug="aarhus", name="Aarhus", created_at=NOW)
        odense = OrganisationRow(slug="odense", name="Odense", created_at=NOW)
        session.add_all([aarhus, odense])
        session.flush()
        session.add_all(
            DeviceRow(id=f"reg-{i:02d}", org_id=aarhus.id or 0, registered_at=NOW, online=i % 2 == 0)
            for i in range(23)
        )
        session.add(DeviceRow(id="gone-1", org_id=aarhus.id or 0, registered_at=NOW, revoked_at=NOW))
        session.add(DeviceRow(id="moved-1", org_id=odense.id or 0, registered_at=NOW))
        session.commit()
    records = [r for i in range(0, 23, 2) for r in climate(f"reg-{i:02d}", NOW - i)]
    records += [r for i in range(7) for r in climate(f"seen-{i}", NOW - 5)]
    records += (
        climate("gone-1", NOW - 5) + climate("moved-1", NOW - 5) + climate("far-1", NOW - 5, org="odense")
    )
    store.write(records)

    def every(**params: object) -> tuple[list[str], list[int]]:
        ids, counts = [], []
        for offset in range(0, 60, 10):
            body = client.get("/api/v1/devices", params={"limit": 10, "offset": offset, **params}).json()
            ids += [d["device"] for d in body["data"]]
            counts.append(body["count"])
        return ids, counts

    ids, counts = every()
    registered = ["gone-1", "moved-1"] + [f"reg-{i:02d}" for i in range(23)]
    assert ids == registered + [f"seen-{i}" for i in range(7)] + ["far-1"]  # by org, then id
    assert set(counts) == {33}
    body = client.get("/api/v1/devices", params={"limit": 10, "offset": 20}).json()
    assert [d["device"] for d in body["data"][:3]] == ["reg-18", "reg-19", "reg-20"]
    assert [d["last_seen"] is not None for d in body["data"][:3]] == [True, False, True]
    assert body["data"][5]["device"] == "seen-0" and not body["data"][5]["registered"]
    ids, counts = every(registered="false")
    assert ids == [f"seen-{i}" for i in range(7)] + ["far-1"] and set(counts) == {8}
    ids, counts = every(org="aarhus")
    assert ids == ["gone-1"] + [f"reg-{i:02d}" for i in range(23)] + [f"seen-{i}" for i in range(7)]
    assert set(counts) == {31}
    ids, counts = every(online="true")
    assert ids == [f"reg-{i:02d}" for i in range(0, 23, 2)] and set(counts) == {12}
    # One device: a registered one with its own store summary, one only seen with the store's.
    one = client.get("/api/v1/devices/reg-02").json()
    assert (one["registered"], one["readings"], one["last_seen"]) == (True, 3, NOW - 2)
    assert client.get("/api/v1/devices/reg-03").json()["readings"] == 0
    seen = client.get("/api/v1/devices/seen-3").json()
    assert (seen["registered"], seen["org"], seen["readings"]) == (False, "aarhus", 3)
