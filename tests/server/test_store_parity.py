"""A city on InfluxDB alone sees what the demo shows: every page, chart, export, report and public page.

The same world (registry, eight days of air quality and a day of climate readings) is built twice:
once on the embedded SQLite store and once on a real influxd written through the gateway's
``influxdb1`` sink. Every read the pages and the API make is fetched from both servers and the
answers must be equal (floats to 1e-9, the stores' rounding).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from server.app import create_app
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.web_world import PASSWORD, WebWorld, build_web_world, catalog_with_air
from tests.services.influxdb import InfluxD
from tests.stores import InfluxStore

pytestmark = pytest.mark.influxdb

RANGES = ("1h", "6h", "24h", "7d", "30d", "1y")


@contextmanager
def _server(tmp: Path, store_url: str, writer: Any) -> Iterator[tuple[TestClient, WebWorld]]:
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp / 'registry.db'}",
        store=store_url,
        catalog_dir=catalog_with_air(tmp),
        alert_interval_s=0,
    )
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        world = build_web_world(client.app.state.resources.engine, writer, NOW)  # type: ignore[attr-defined]
        login = client.post("/api/v1/auth/login", json={"email": "admin@govtech.dk", "password": PASSWORD})
        assert login.status_code == 200, login.text
        yield client, world


def _same(a: Any, b: Any, where: str = "") -> None:
    """Assert ``a == b`` with floats equal to 1e-9 (relative), naming the first difference."""
    if isinstance(a, float) and isinstance(b, float | int):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (where, a, b)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), (where, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


_NUMBER = re.compile(r"-?\d+\.\d+")


def _html(text: str) -> str:
    """A page without what differs by construction: the CSRF/nonce attributes."""
    return re.sub(r'(nonce|csrf[-_a-z]*)="[^"]*"', r'\1=""', text)


def test_influxdb_city_sees_the_same_as_the_embedded_store(influxd: InfluxD, tmp_path: Path) -> None:
    """Test that pages, charts of every range, exports, the report, devices, latest, readings and
    public pages answer the same on InfluxDB as on the embedded store."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        SqliteStore(tmp_path / "a" / "store.db") as lite,
        InfluxStore(influxd.sink_url) as influx,
        _server(tmp_path / "a", str(tmp_path / "a" / "store.db"), lite) as (a, world),
        _server(tmp_path / "b", influxd.sink_url, influx) as (b, world_b),
    ):
        assert world.deployments == world_b.deployments and world.devices == world_b.devices
        json_paths = ["/api/v1/devices", "/api/v1/health"]
        text_paths = ["/", "/fleet", "/public"]
        for name, dep in world.deployments.items():
            json_paths += [f"/deployments/{dep}/series?range={r}" for r in RANGES]
            json_paths += [f"/api/v1/deployments/{dep}/chart?start={NOW - 8 * 86400}&points=200"]
            json_paths += [f"/api/v1/deployments/{dep}/readings?start={NOW - 3 * 3600}&limit=5000"]
            json_paths += [f"/public/deployments/{dep}/series", f"/kiosk/data?deployments={dep}"]
            text_paths += [
                f"/deployments/{dep}",
                f"/public/deployments/{dep}",
                f"/api/v1/export/deployments/{dep}/readings?format=csv&start={NOW - 2 * 86400}",
                f"/api/v1/export/deployments/{dep}/readings?format=senml&start={NOW - 3600}",
                f"/api/v1/deployments/{dep}/report",
            ]
            del name
        for device in world.devices.values():
            json_paths += [f"/api/v1/devices/{device}", f"/api/v1/devices/{device}/latest"]
            json_paths += [f"/api/v1/devices/{device}/readings?start={NOW - 7200}"]
        drawn = 0
        for path in json_paths:
            ra, rb = a.get(path), b.get(path)
            assert ra.status_code == rb.status_code, (path, ra.status_code, rb.status_code, rb.text[:300])
            if path == "/api/v1/health":
                assert (ra.json()["store"], rb.json()["store"]) == ("sqlite", "influxdb1")
                continue
            _same(ra.json(), rb.json(), path)
            drawn += path.endswith(RANGES) and ra.status_code == 200 and bool(ra.json().get("quantities"))
        assert drawn >= len(RANGES), "the charts of every range should have data"
        shown = set()
        for path in text_paths:
            ra, rb = a.get(path), b.get(path)
            assert ra.status_code == rb.status_code, (path, ra.status_code, rb.status_code)
            if ra.status_code != 200:
                continue  # e.g. the public page of a deployment that is not public
            shown.add(path.split("?")[0].rsplit("/", 1)[0] if "/deployments/" in path else path)
            ta, tb = _html(ra.text), _html(rb.text)
            # Floats printed in full may differ in the last digits between the stores' means.
            assert _NUMBER.sub("N", ta) == _NUMBER.sub("N", tb), path
            na, nb = [float(x) for x in _NUMBER.findall(ta)], [float(x) for x in _NUMBER.findall(tb)]
            _same(na, nb, path)
        assert {"/", "/fleet", "/public", "/public/deployments", "/deployments"} <= shown, shown
        assert "temperature" in a.get("/").text
