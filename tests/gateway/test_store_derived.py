"""Tests of derived quantities applied on read (gateway/store/derived.py) on both backends.

The raw readings are written as the gateway writes them (SQLite; the real ``influxdb1`` sink into
a real influxd) and read through ``DerivedReader`` over each backend's reader; every derived value
is checked against the formula applied to the records themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store import DerivedReader, SqliteStore
from kits.derived import dew_point, fill_level, parse
from kits.wire import Record
from server.export import iter_readings
from tests.services.influxdb import InfluxD
from tests.stores import InfluxStore

T0 = 1_750_000_000.0 - (1_750_000_000.0 % 3600)
ORG = "derived-org"
RULES = parse(
    [
        {"kind": "fill_level", "depth_mm": 1000, "device": "bin-1"},
        {"kind": "fill_level", "depth_mm": 800, "device": "bin-2"},
        {"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30, "mains_v": 230},
        {"kind": "dew_point"},
        {"kind": "counts"},
    ]
)


def data() -> list[Record]:
    out: list[Record] = []
    for i in range(240):  # 2 h at 30 s
        t = T0 + i * 30
        for dev in ("bin-1", "bin-2"):
            out.append(Record(ORG, dev, "vl53l1x", "distance", 950.0 - 3 * i + (dev == "bin-2") * 5, t))
            out.append(Record(ORG, dev, "vl53l1x", "passes", float(i % 4), t))
            out.append(Record(ORG, dev, "ads1x15", "voltage_a0", round(0.1 + (i % 10) / 40, 4), t))
            out.append(Record(ORG, dev, "ads1x15", "voltage_a1", 0.7, t))
            out.append(Record(ORG, dev, "bme280", "temperature", round(19 + i / 60, 3), t))
            if i % 7:  # humidity missing every 7th reading: no dew point then, the temperature stays
                out.append(Record(ORG, dev, "bme280", "humidity", round(55 + (i % 13), 3), t))
    return out


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The raw readings written as the gateway writes them, read as the server reads them."""
    if request.param == "influxdb":
        influxd: InfluxD = request.getfixturevalue("influxd")
        with InfluxStore(influxd.sink_url) as handle:
            handle.write(data())
            yield handle
    else:
        with SqliteStore(tmp_path / "s.db") as handle:
            handle.write(data())
            yield handle


def _expected(records: list[Record], dev: str) -> dict[tuple[float, str, str], float]:
    depth = {"bin-1": 1000.0, "bin-2": 800.0}[dev]
    out: dict[tuple[float, str, str], float] = {}
    hum = {r.time: r.value for r in records if r.device == dev and r.quantity == "humidity"}
    for r in records:
        if r.device != dev:
            continue
        if r.quantity == "distance":
            out[(r.time, r.sensor, "fill_level")] = fill_level(r.value, depth)
        elif r.quantity == "voltage_a0":
            out[(r.time, r.sensor, "current_a0")] = r.value * 30
            out[(r.time, r.sensor, "power_a0")] = r.value * 30 * 230 / 1000
        elif r.quantity == "temperature" and r.time in hum:
            value = dew_point(r.value, hum[r.time])
            assert value is not None
            out[(r.time, r.sensor, "dew_point")] = value
    return out


def test_derived_readings_are_added_on_read_and_raw_ones_stay(store: Any) -> None:
    """Test that readings() returns every raw reading unchanged plus fill level (each bin its own
    depth), current and power of the clamped channel only, and a dew point exactly where a
    humidity exists; paged reads (iter_readings, 97 at a time) find the same."""
    records = data()
    reader = DerivedReader(store, {(ORG, "bin-1"): RULES, (ORG, "bin-2"): RULES})
    for dev in ("bin-1", "bin-2"):
        raw = store.readings(ORG, dev, T0, T0 + 7200)
        got = reader.readings(ORG, dev, T0, T0 + 7200)
        assert [r for r in got if r.quantity in {x.quantity for x in raw}] == raw
        derived = {(r.time, r.sensor, r.quantity): r.value for r in got if r not in raw}
        want = _expected(records, dev)
        assert derived.keys() == want.keys()
        assert all(abs(derived[k] - want[k]) < 1e-9 for k in want)
        assert not any(q.endswith("_a1") for _, _, q in derived if q != "voltage_a1")
        assert [r for r in iter_readings(reader, ORG, dev, T0, T0 + 7200, chunk=97)] == got
        # A derived quantity asked for alone, paged: a missing humidity never ends the read early.
        dew = [r for r in got if r.quantity == "dew_point"]
        assert list(iter_readings(reader, ORG, dev, T0, T0 + 7200, quantity="dew_point", chunk=13)) == dew
        assert (
            reader.readings(ORG, dev, T0, T0 + 7200, quantity="fill_level", limit=5)
            == [r for r in got if r.quantity == "fill_level"][:5]
        )
    # a device without rules reads as it is; a derived quantity of it is simply not there
    plain = DerivedReader(store, {(ORG, "bin-1"): RULES})
    assert plain.readings(ORG, "bin-2", T0, T0 + 7200) == store.readings(ORG, "bin-2", T0, T0 + 7200)
    assert plain.readings(ORG, "bin-2", T0, T0 + 7200, quantity="fill_level") == []


def test_latest_adds_the_derived_values_of_the_newest_readings(store: Any) -> None:
    """Test that latest() adds fill level, current, power and dew point computed from the newest
    raw readings; where the newest humidity is not of the newest temperature's time, no dew point."""
    reader = DerivedReader(store, {(ORG, "bin-1"): RULES, (ORG, "bin-2"): RULES})
    got = {(r.device, r.quantity): r for r in reader.latest([(ORG, "bin-1"), (ORG, "bin-2")])}
    raw = {(r.device, r.quantity): r for r in store.latest([(ORG, "bin-1"), (ORG, "bin-2")])}
    assert {k: v for k, v in got.items() if k in raw} == raw
    assert got[("bin-1", "fill_level")].value == pytest.approx(
        fill_level(raw[("bin-1", "distance")].value, 1000)
    )
    assert got[("bin-2", "fill_level")].value == pytest.approx(
        fill_level(raw[("bin-2", "distance")].value, 800)
    )
    assert got[("bin-1", "power_a0")].value == pytest.approx(raw[("bin-1", "voltage_a0")].value * 6.9)
    # the last reading (i = 239) has humidity; 238 too: dew point of the pair
    t, h = raw[("bin-1", "temperature")], raw[("bin-1", "humidity")]
    assert t.time == h.time
    assert got[("bin-1", "dew_point")].value == pytest.approx(dew_point(t.value, h.value) or math.nan)


def test_windows_of_derived_quantities_follow_their_inputs(store: Any) -> None:
    """Test that windows() adds fill level (min from the max distance), current, power and dew point
    windows of the same width; counts stay raw windows (summed where charts are drawn)."""
    reader = DerivedReader(store, {(ORG, "bin-1"): RULES})
    for every in (60.0, 600.0, 3600.0):
        raw = store.windows(ORG, "bin-1", T0, T0 + 7200, every)
        got = reader.windows(ORG, "bin-1", T0, T0 + 7200, every)
        assert [w for w in got if w.quantity in {x.quantity for x in raw}] == raw
        by = {(w.start, w.quantity): w for w in got}
        for w in raw:
            if w.quantity == "distance":
                f = by[(w.start, "fill_level")]
                assert (f.mean, f.min, f.max, f.count) == pytest.approx(
                    (fill_level(w.mean, 1000), fill_level(w.max, 1000), fill_level(w.min, 1000), w.count)
                )
            if w.quantity == "voltage_a0":
                assert by[(w.start, "power_a0")].mean == pytest.approx(w.mean * 6.9)
            if w.quantity == "temperature":
                h = by[(w.start, "humidity")]
                assert by[(w.start, "dew_point")].mean == pytest.approx(dew_point(w.mean, h.mean) or math.nan)
        assert {w.quantity for w in got} - {w.quantity for w in raw} == {
            "fill_level",
            "current_a0",
            "power_a0",
            "dew_point",
        }
        only = reader.windows(ORG, "bin-1", T0, T0 + 7200, every, quantity="fill_level")
        assert only == [w for w in got if w.quantity == "fill_level"]


def test_missing_inputs_leave_the_raw_values(store: Any) -> None:
    """Test that a dew point rule on a device without humidity, and a fill level on one without a
    distance, derive nothing and leave every raw reading as it is."""
    rules = parse(
        [
            {"kind": "dew_point", "sensor": "ads1x15"},
            {"kind": "fill_level", "depth_mm": 500, "sensor": "bme280"},
        ]
    )
    reader = DerivedReader(store, {(ORG, "bin-1"): rules})
    raw = store.readings(ORG, "bin-1", T0, T0 + 7200)
    assert reader.readings(ORG, "bin-1", T0, T0 + 7200) == raw
    assert reader.windows(ORG, "bin-1", T0, T0 + 7200, 600.0) == store.windows(
        ORG, "bin-1", T0, T0 + 7200, 600.0
    )
    assert sorted(reader.latest([(ORG, "bin-1")]), key=str) == sorted(store.latest([(ORG, "bin-1")]), key=str)
    assert reader.readings(ORG, "bin-1", T0, T0 + 7200, quantity="dew_point") == []
