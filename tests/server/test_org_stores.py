"""Each city's data in its own store: an organisation with its own InfluxDB, written and read there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.sinks import open_sink
from gateway.store import DeadLetter
from kits.errors import ConfigError
from server.app import create_app
from server.settings import ServerSettings
from tests.server.data import NOW, climate
from tests.services.influxdb import InfluxD

pytestmark = pytest.mark.influxdb


def test_an_org_with_its_own_influxdb_is_written_and_read_there(
    influxd: InfluxD, influxd_factory: Callable[..., InfluxD], tmp_path: Path
) -> None:
    """Test that sinks with ``orgs=``/``skip_orgs=`` put Aarhus's readings in its own InfluxDB and the
    others' in the shared one, and that a server with ``org_stores`` shows both, reading each there."""
    own = influxd_factory()
    shared_sink = open_sink(f"{influxd.sink_url}?skip_orgs=aarhus")
    own_sink = open_sink(f"{own.sink_url}?orgs=aarhus")
    for sink in (shared_sink, own_sink):
        sink.open()
        sink.write(climate("dev-a", NOW - 5, org="aarhus") + climate("dev-o", NOW - 5, org="odense"))
    shared_sink.write_dead_letters([DeadLetter(NOW - 1, "suitcase/v1/x/y/z", b"{}", "bad_topic", "no")])  # type: ignore[attr-defined]
    assert not hasattr(own_sink, "write_dead_letters"), "an org's own sink keeps no dead letters"
    assert influxd.count("suitcase_aarhus") == 0 and influxd.count("suitcase_odense") == 3
    assert own.count("suitcase_aarhus") == 3 and own.count("suitcase_odense") == 0

    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=influxd.sink_url,
        org_stores={"aarhus": own.sink_url},
        alert_interval_s=0,
    )
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        devices = {d["device"]: d["org"] for d in client.get("/api/v1/devices").json()["data"]}
        assert devices == {"dev-a": "aarhus", "dev-o": "odense"}
        for device in devices:
            latest = client.get(f"/api/v1/devices/{device}/latest").json()["readings"]
            assert {r["quantity"] for r in latest} == {"temperature", "humidity", "pressure"}
            readings = client.get(f"/api/v1/devices/{device}/readings?start={NOW - 60}").json()
            assert readings["count"] == 3
        assert client.get("/api/v1/dead-letters").json()["count"] == 1
        own.stop()
        answer = client.get("/api/v1/devices/dev-a/latest")
        # An anonymous reader learns that the store did not answer, not its address (staff get it).
        assert answer.status_code == 503 and "did not answer" in answer.json()["detail"]
        assert "127.0.0.1" not in answer.json()["detail"]
    with pytest.raises(ConfigError, match=r"orgs= and skip_orgs= together"):
        open_sink(f"{influxd.sink_url}?orgs=a&skip_orgs=b")


def test_a_bad_org_store_refuses_to_start_naming_the_setting(influxd: InfluxD, tmp_path: Path) -> None:
    """Test that an organisation's store that cannot be used stops the server at start, naming
    ``org_stores`` and the organisation."""
    from suitcase.broker import free_port

    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        org_stores={"aarhus": f"influxdb1://127.0.0.1:{free_port()}?timeout=2"},
    )
    with (
        pytest.raises(ConfigError, match=r"cannot reach InfluxDB.*org_stores\['aarhus'\]"),
        TestClient(create_app(settings, clock=lambda: NOW)),
    ):
        pass
