"""Tests of the columnar windows read (``Reader.series_windows``) from the store to the chart's bytes.

A chart reads each series' windows as columns (server/charts.py ``downsample``) and the API builds
its body without validation (server/api/routes/deployments.py ``chart_body``). Both are held here
to what the per-window path drew: every window of ``Reader.windows`` taken one by one
(``window_value``), and a validated :class:`ChartPublic`, byte for byte. On made-up windows
(hypothesis: missing windows, summed and derived quantities, a device leaving and coming back) and
on both real stores (SQLite; a real influxd with every rollup tier, where a chart's windows come
from several tiers' statements and a window may be split between two).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sinks.influxdb1 import InfluxDB1Sink
from gateway.store import (
    DerivedReader,
    Reader,
    SeriesWindows,
    SqliteStore,
    Window,
    open_reader,
    series_of,
    windows_of,
)
from gateway.store.derived import derive_windows
from kits.derived import Rule, parse
from kits.wire import Record
from server.api.routes.deployments import ChartPublic, ChartSeries, chart_body
from server.charts import Series, Statistic, bucket_width, downsample, window_value
from server.spans import DeviceSpan
from tests.services.influxdb import InfluxD

RULES = parse(
    [
        {"kind": "fill_level", "depth_mm": 1000, "device": "d"},
        {"kind": "fill_level", "depth_mm": 800},
        {"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30, "mains_v": 230},
        {"kind": "dew_point"},
        {"kind": "counts"},
    ]
)
QUANTITIES = ["co2", "distance", "humidity", "passes", "temperature", "voltage_a0"]
HOUR = 3600.0


def _per_window(
    store: Reader,
    spans: list[DeviceSpan],
    start: float,
    end: float,
    points: int,
    statistic: Statistic,
    quantity: str | None = None,
) -> list[Series]:
    """What a chart drew before the columns: each window of ``Reader.windows`` taken one by one."""
    every = bucket_width(end - start, points)
    start = math.floor(start / every) * every
    out: dict[tuple[str, str, str], Series] = {}
    for org, device, span_from, span_to in spans:
        lo, hi = max(start, span_from), min(end, span_to)
        if hi <= lo:
            continue
        for w in store.windows(org, device, lo, hi, every, quantity=quantity):
            series = out.setdefault((device, w.sensor, w.quantity), Series(org, device, w.sensor, w.quantity))
            series.times.append(w.start)
            series.values.append(window_value(w, statistic))
    return sorted(out.values(), key=lambda s: (s.device, s.sensor, s.quantity))


def _validated(start: float, end: float, points: int, mode: str, series: list[Series]) -> bytes:
    """The chart's body as the route made it before: a validated model."""
    from kits.quantities import spec

    chart = ChartPublic(
        deployment_id=7,
        start=start,
        end=end,
        points=points,
        mode=mode,
        series=[
            ChartSeries(
                device=x.device,
                sensor=x.sensor,
                quantity=x.quantity,
                unit=found.unit if (found := spec(x.quantity)) is not None else None,
                times=x.times,
                values=x.values,
            )
            for x in series
        ],
    )
    return chart.model_dump_json().encode()


def _same_charts(
    store: Reader,
    spans: list[DeviceSpan],
    start: float,
    end: float,
    points: int,
    quantity: str | None = None,
) -> int:
    """Assert the columnar and per-window paths draw the same chart, to the byte; return its points."""
    drawn = 0
    for statistic in ("mean", "min", "max"):
        new = downsample(store, spans, start, end, points=points, statistic=statistic, quantity=quantity)
        old = _per_window(store, spans, start, end, points, statistic, quantity)
        assert new == old
        assert chart_body(7, start, end, points, statistic, new) == _validated(
            start, end, points, statistic, old
        )
        drawn += sum(len(s.times) for s in new)
    return drawn


class _Answers:
    """A store's read side answering made-up windows of each device (what any backend returns)."""

    def __init__(self, windows: dict[str, list[Window]]) -> None:
        self.answer = windows

    def _of(self, device: str, start: float, end: float, quantity: str | None) -> list[Window]:
        return [
            w
            for w in self.answer.get(device, [])
            if start <= w.start < end and (quantity is None or w.quantity == quantity)
        ]

    def windows(
        self, org: str, device: str, start: float, end: float, every: float, **kw: Any
    ) -> list[Window]:
        return self._of(device, start, end, kw.get("quantity"))

    def series_windows(
        self, org: str, device: str, start: float, end: float, every: float, **kw: Any
    ) -> list[SeriesWindows]:
        return series_of(self._of(device, start, end, kw.get("quantity")))


_window = st.tuples(
    st.integers(1, 60),
    st.floats(-50, 1000, allow_nan=False).map(lambda v: round(v, 3)),
    st.floats(0, 30, allow_nan=False),
    st.floats(0, 30, allow_nan=False),
)


@st.composite
def _device_windows(draw: st.DrawFn, device: str) -> list[Window]:
    """One device's hour windows, oldest first, ordered by (start, sensor, quantity), some missing."""
    sensors = draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True))
    quantities = draw(st.lists(st.sampled_from(QUANTITIES), min_size=1, max_size=6, unique=True))
    hours = draw(st.integers(1, 12))
    missing = draw(st.sets(st.integers(0, 150), max_size=20))
    out = []
    for i in range(hours):
        for sensor in sorted(sensors):
            for quantity in sorted(quantities):
                if len(out) + len(missing) in missing:
                    missing.discard(len(out) + len(missing))
                    continue
                count, mean, below, above = draw(_window)
                out.append(
                    Window("o", device, sensor, quantity, i * HOUR, count, mean, mean - below, mean + above)
                )
    return out


@settings(max_examples=60, deadline=None)
@given(_device_windows("d"), _device_windows("e"), st.booleans(), st.booleans())
def test_columns_draw_what_the_windows_drew(
    first: list[Window], second: list[Window], derived: bool, leaves: bool
) -> None:
    """Test that a chart drawn from the columns equals, to the byte, the chart drawn window by
    window: two devices, missing windows, summed counts, derived quantities (fill level, clamp
    current and power, dew point: through DerivedReader), a device that leaves and comes back."""
    assert windows_of(series_of(first)) == first  # the two forms hold the same windows
    answers = _Answers({"d": first, "e": second})
    rules: dict[tuple[str, str], list[Rule]] = {("o", "d"): list(RULES), ("o", "e"): list(RULES[1:])}
    store = cast(Reader, DerivedReader(cast(Reader, answers), rules) if derived else answers)
    spans = [DeviceSpan("o", "d", 0.0, 12 * HOUR), DeviceSpan("o", "e", 0.0, 12 * HOUR)]
    if leaves:
        spans = [DeviceSpan("o", "d", 0.0, 3 * HOUR), DeviceSpan("o", "e", 0.0, 12 * HOUR)]
        spans.append(DeviceSpan("o", "d", 5 * HOUR, 12 * HOUR))
    _same_charts(store, spans, 0.0, 12 * HOUR, 12)
    for quantity in ("passes", "fill_level", "dew_point", "co2"):
        _same_charts(store, spans, 0.0, 12 * HOUR, 12, quantity=quantity)


@settings(max_examples=60, deadline=None)
@given(_device_windows("d"))
def test_derived_columns_are_the_derived_windows(windows: list[Window]) -> None:
    """Test that DerivedReader's columns hold exactly the windows it derived one by one before: the
    measured ones as read, plus derive_windows of them, ordered by (start, sensor, quantity)."""
    reader = DerivedReader(cast(Reader, _Answers({"d": windows})), {("o", "d"): list(RULES)})
    want = sorted([*windows, *derive_windows(windows, RULES)], key=lambda w: (w.start, w.sensor, w.quantity))
    got = reader.series_windows("o", "d", 0.0, 12 * HOUR, HOUR)
    assert windows_of(got) == want == reader.windows("o", "d", 0.0, 12 * HOUR, HOUR)
    assert [(s.sensor, s.quantity) for s in got] == sorted({(w.sensor, w.quantity) for w in want})


def _records(start: float, end: float) -> list[Record]:
    """Readings of a bin and a switchboard every 97 s, with gaps (an hour offline, humidity missing
    at times), counts, and what the derived quantities need."""
    out = []
    t = start
    i = 0
    while t < end:
        if not (start + 5 * HOUR <= t < start + 6 * HOUR):  # offline: missing windows
            out.append(Record("o", "d", "bme280", "temperature", round(20 + (t % 7), 3), t))
            if i % 5:
                out.append(Record("o", "d", "bme280", "humidity", round(50 + (t % 11), 3), t))
            out.append(Record("o", "d", "vl53l1x", "distance", round(900 - (t % 600), 1), t))
            out.append(Record("o", "d", "vl53l1x", "passes", float(i % 4), t))
            out.append(Record("o", "d", "ads1x15", "voltage_a0", round(0.1 + (i % 10) / 40, 4), t))
        t += 97.0
        i += 1
    return out


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def reader(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Reader, float]]:
    """Two days of readings up to now, read as the server reads them (InfluxDB: every rollup tier,
    computed as ``retention apply`` does, so the newest windows come from finer tiers and raw)."""
    now = time.time()
    records = _records(now - 2 * 86_400, now)
    if request.param == "sqlite":
        with SqliteStore(tmp_path / "s.db") as lite:
            lite.write(records)
            yield lite, now
        return
    from gateway.store.influxdb1_rollups import from_url as rollups_of
    from gateway.store.retention import parse_retention

    influxd: InfluxD = request.getfixturevalue("influxd")
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), now)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    tool.backfill("suitcase_o", now - 3 * 86_400, now)
    influx = open_reader(influxd.sink_url)
    try:
        yield influx, now
    finally:
        influx.close()


def test_columns_draw_what_the_windows_drew_on_both_stores(reader: tuple[Reader, float]) -> None:
    """Test that on each store every chart range, raw and with derived quantities, draws the same
    bytes from the columns as window by window, from a start that is no window boundary."""
    store, now = reader
    derived = DerivedReader(store, {("o", "d"): list(RULES)})
    spans = [DeviceSpan("o", "d", now - 2 * 86_400, math.inf)]
    drawn = 0
    for span in (HOUR, 86_400.0, 2 * 86_400.0):
        for points in (1000, 50):
            for read in (store, derived):
                drawn += _same_charts(read, spans, now - span + 12.5, now, points)
        drawn += _same_charts(derived, spans, now - span, now, 300, quantity="dew_point")
        drawn += _same_charts(store, spans, now - span, now, 300, quantity="passes")
    assert drawn > 5_000
    for every in (60.0, 900.0, 3600.0, 7.0):
        got = derived.series_windows("o", "d", now - 86_400, now, every)
        assert got == series_of(derived.windows("o", "d", now - 86_400, now, every))
        assert {s.quantity for s in got} >= {"fill_level", "current_a0", "dew_point", "passes"}
        assert all(type(t) is float for s in got for t in [*s.starts, *s.means, *s.mins, *s.maxes])
    # Read for means only (a chart of means): the same counts and means, no mins or maxes, from
    # raw readings (5 and 7 s), a tier's points added up (120 s) and grouped (900 s), whole tiers.
    for every in (5.0, 7.0, 120.0, 900.0, 3600.0):
        for read in (store, derived):
            full = read.series_windows("o", "d", now - 86_400 + 12.5, now, every)
            lean = read.series_windows("o", "d", now - 86_400 + 12.5, now, every, means_only=True)
            assert lean == [replace(s, mins=[], maxes=[]) for s in full], (every, read)
            assert len(full) >= 5 and all(s.mins and s.maxes for s in full)
