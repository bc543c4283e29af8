"""Tests of gateway/store/influxdb1.py: InfluxQL reads against a real influxd, written by the sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sinks import open_sink
from gateway.store import SqliteStore, open_reader
from gateway.store.influxdb1 import InfluxDB1Reader
from kits.wire import Record
from tests.services.influxdb import InfluxD

pytestmark = pytest.mark.influxdb

T0 = 1_750_000_000.0 - (1_750_000_000.0 % 3600)


def data() -> list[Record]:
    return [
        Record(org, dev, sensor, q, round(20 + i * 0.37 + len(q), 3), T0 + i * 20)
        for org, dev in (("aarhus", "pi-1"), ("city-x", "pi-2"))
        for sensor in ("bme280", "scd40")
        for q in ("temperature", "humidity")
        for i in range(360)
    ]


def test_influxql_reads_match_the_embedded_store(influxd: InfluxD, tmp_path: Path) -> None:
    """Test that range, latest and window reads from InfluxDB 1.x equal the embedded store's answers."""
    records = data()
    sink = open_sink(influxd.sink_url)
    sink.open()
    sink.write(records)
    sink.close()
    reader = open_reader(influxd.sink_url)
    assert isinstance(reader, InfluxDB1Reader)
    with SqliteStore(tmp_path / "s.db") as store:
        store.write(records)
        for kwargs in ({}, {"sensor": "scd40"}, {"quantity": "humidity"}):
            assert reader.readings("pi-2", T0 + 100, T0 + 2000, **kwargs) == store.readings(  # type: ignore[arg-type]
                "pi-2",
                T0 + 100,
                T0 + 2000,
                **kwargs,  # type: ignore[arg-type]
            )
        assert reader.readings("pi-1", T0, T0 + 9999, limit=7) == store.readings(
            "pi-1", T0, T0 + 9999, limit=7
        )
        assert reader.latest() == store.latest()
        assert reader.latest("pi-1") == store.latest("pi-1")
        for every in (60.0, 600.0, 3600.0):
            got = reader.windows("pi-1", T0, T0 + 7200, every, quantity="temperature")
            want = store.windows("pi-1", T0, T0 + 7200, every, quantity="temperature")
            assert [(w.start, w.count, w.min, w.max, w.sensor) for w in got] == [
                (w.start, w.count, w.min, w.max, w.sensor) for w in want
            ]
            assert all(abs(a.mean - b.mean) < 1e-9 for a, b in zip(got, want, strict=True))
    assert reader.readings("nobody", T0, T0 + 10) == []
    reader.close()
