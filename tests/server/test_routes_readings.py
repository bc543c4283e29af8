"""Tests of server/api/routes/readings.py: a device's readings in a range, and input errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from kits.wire import Record
from tests.server.data import NOW, climate

URL = "/api/v1/devices/dev-a/readings"


@pytest.fixture
def history(store: SqliteStore) -> None:
    """Readings of dev-a every 10 minutes for the last 2 hours, and a second sensor's light."""
    for minutes in range(0, 121, 10):
        store.write(climate("dev-a", NOW - minutes * 60, temperature=20 + minutes / 100))
    store.write([Record("aarhus", "dev-a", "veml7700", "illuminance", 320.0, NOW - 60)])


def _detail(response: object) -> tuple[list[object], str]:
    body = response.json()  # type: ignore[attr-defined]
    error = body["detail"][0]
    return error["loc"], error["msg"]


@pytest.mark.usefixtures("history")
def test_default_is_the_last_hour(client: TestClient) -> None:
    """Test that without start/end the last hour is returned, oldest first, with ISO times."""
    body = client.get(URL).json()
    times = sorted({r["time"] for r in body["readings"]})
    assert times[0] == NOW - 3600 and times[-1] == NOW
    assert [r["time"] for r in body["readings"]] == sorted(r["time"] for r in body["readings"])
    assert body["start"] == NOW - 3600 and body["truncated"] is False
    first = body["readings"][0]
    assert set(first) == {"sensor", "quantity", "unit", "time", "time_iso", "value"}
    assert first["time_iso"] == "2025-06-15T14:06:40.000Z"


@pytest.mark.usefixtures("history")
def test_iso_and_epoch_bounds_agree(client: TestClient) -> None:
    """Test that start/end as ISO 8601 (with Z, offset or none) and as epoch select the same."""
    epoch = client.get(URL, params={"start": NOW - 1800, "end": NOW - 600}).json()
    iso_z = client.get(URL, params={"start": "2025-06-15T14:36:40Z", "end": "2025-06-15T14:56:40Z"}).json()
    offset = client.get(
        URL, params={"start": "2025-06-15T16:36:40+02:00", "end": "2025-06-15T14:56:40"}
    ).json()
    assert epoch["readings"] == iso_z["readings"] == offset["readings"]
    # [start, end): the reading at end is excluded.
    assert {r["time"] for r in epoch["readings"]} == {NOW - 1800, NOW - 1200}


@pytest.mark.usefixtures("history")
def test_filters_by_sensor_and_quantity(client: TestClient) -> None:
    """Test that sensor and quantity narrow the readings."""
    light = client.get(URL, params={"sensor": "veml7700"}).json()["readings"]
    assert [(r["quantity"], r["unit"], r["value"]) for r in light] == [("illuminance", "lx", 320.0)]
    temps = client.get(URL, params={"quantity": "temperature"}).json()["readings"]
    assert temps and {r["quantity"] for r in temps} == {"temperature"}


@pytest.mark.usefixtures("history")
def test_limit_marks_truncation(client: TestClient) -> None:
    """Test that a limit cuts the oldest-first list and says it was truncated."""
    body = client.get(URL, params={"limit": 2}).json()
    assert body["count"] == 2 and body["truncated"] is True


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"start": "yesterday"}, "start", "ISO 8601"),
        ({"end": "2025-13-01"}, "end", "epoch seconds"),
        ({"start": "nan"}, "start", "finite"),
        ({"start": "-5"}, "start", ">= 0"),
        ({"start": NOW, "end": NOW - 60}, "end", "must be after start"),
        ({"start": NOW, "end": NOW}, "end", "must be after start"),
        ({"start": NOW - 400 * 86400, "end": NOW}, "end", "366 days"),
        ({"quantity": "temprature"}, "quantity", "temperature, humidity"),
        ({"sensor": "BME 280"}, "sensor", "pattern"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": 100_001}, "limit", "less than or equal to 100000"),
        ({"limit": "many"}, "limit", "integer"),
    ],
)
def test_bad_input_is_422_naming_the_parameter(
    client: TestClient, params: dict[str, object], field: str, message: str
) -> None:
    """Test that each bad parameter is a 422 whose error names it and says what is wrong."""
    response = client.get(URL, params=params)
    assert response.status_code == 422, response.text
    loc, msg = _detail(response)
    assert loc == ["query", field]
    assert message in msg


def test_bad_device_id_is_422(client: TestClient) -> None:
    """Test that a device id that is not a slug is rejected."""
    response = client.get("/api/v1/devices/-dev/readings")
    assert response.status_code == 422 and _detail(response)[0] == ["path", "device"]


def test_unknown_device_is_404(client: TestClient, store: SqliteStore) -> None:
    """Test that readings of a device that never reported is a 404, not an empty list."""
    store.write(climate("dev-a", NOW))
    response = client.get("/api/v1/devices/ghost-9/readings")
    assert response.status_code == 404 and "dev-a" in response.json()["detail"]


def test_device_with_no_readings_in_range_is_empty(client: TestClient, store: SqliteStore) -> None:
    """Test that a known device with nothing in the range returns an empty list."""
    store.write(climate("dev-a", NOW - 7200))
    body = client.get(URL).json()
    assert body["readings"] == [] and body["count"] == 0
