"""Tests of gateway/store/sqlite.py's rollups, downsampled windows and per-org retention."""

from __future__ import annotations

import math
import multiprocessing
import random
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import FINE_WIDTHS, ROLLUP_WIDTHS, SqliteStore, Window, windows_of
from kits.wire import Record

DAY = 86_400.0
T0 = 1_750_000_000.0 - (1_750_000_000.0 % 3600)  # on an hour boundary


def test_windows_from_rollups_equal_windows_from_readings(tmp_path: Path) -> None:
    """Test that minute/hour windows read from rollups equal the same aggregates computed from readings.

    Written in shuffled batches with redeliveries and overwrites: a rewrite never counts twice.
    """
    rng = random.Random(4)
    recs = [
        Record("o", "pi", "s", "temperature", round(rng.uniform(-5, 30), 2), T0 + t * 7.5)
        for t in range(2000)
    ]
    shuffled = recs[:]
    rng.shuffle(shuffled)
    with SqliteStore(tmp_path / "s.db") as store:
        for i in range(0, len(shuffled), 300):
            store.write(shuffled[i : i + 300])
            store.write(shuffled[i : i + 50])  # a redelivery
            if i == 600:
                store.refresh_rollups()  # refreshed halfway: later writes re-dirty the minutes
        end = T0 + 2000 * 7.5
        for every in (60.0, 3600.0, 7200.0):
            got = store.windows("o", "pi", T0, end, every)
            want: dict[float, list[float]] = {}
            for r in recs:
                want.setdefault(r.time - r.time % every, []).append(r.value)
            assert [w.start for w in got] == sorted(want)
            for w in got:
                values = want[w.start]
                assert (w.count, w.min, w.max) == (len(values), min(values), max(values))
                assert abs(w.mean - sum(values) / len(values)) < 1e-9
        odd = store.windows("o", "pi", T0, T0 + 600, 45.0)  # not a whole minute: from the readings
        assert sum(w.count for w in odd) == 80 and odd[0].start == T0 - T0 % 45


_SERIES = [("bme280", "temperature"), ("bme280", "humidity"), ("scd41", "co2")]


@pytest.fixture(scope="module")
def raw_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three hours of three series at irregular times, some seconds with several readings, many on
    a window's first instant (quarter seconds), one series at odd milliseconds."""
    rng = random.Random(21)
    recs = []
    for sensor, quantity in _SERIES:
        t = T0 + (rng.uniform(0, 5) if quantity == "co2" else rng.randint(0, 5))
        while t < T0 + 3 * 3600:
            recs.append(Record("o", "pi", sensor, quantity, round(rng.uniform(-20, 40), 2), round(t, 3)))
            t += rng.choice([0.25, 1.0, 1.0, 3.5, 17.0, 240.0])
    store = SqliteStore(tmp_path_factory.mktemp("raw") / "s.db")
    store.write(recs)
    yield store, recs
    store.close()


def _want(
    recs: list[Record], start: float, end: float, every: float, sensor: str | None, quantity: str | None
) -> list[tuple[float, str, str, int, float, float, float]]:
    """The windows of ``recs`` computed in Python: (start, sensor, quantity, count, mean, min, max)."""
    groups: dict[tuple[float, str, str], list[float]] = {}
    for r in recs:
        if start <= r.time < end and sensor in (None, r.sensor) and quantity in (None, r.quantity):
            groups.setdefault((math.floor(r.time / every) * every, r.sensor, r.quantity), []).append(r.value)
    return [(*key, len(v), sum(v) / len(v), min(v), max(v)) for key, v in sorted(groups.items())]


def _assert_windows(got: list[Window], want: list[tuple[float, str, str, int, float, float, float]]) -> None:
    assert [(w.start, w.sensor, w.quantity, w.count, w.min, w.max) for w in got] == [
        (*key, n, low, high) for *key, n, _, low, high in want
    ]
    for w, (*_, mean, _low, _high) in zip(got, want, strict=True):
        assert math.isclose(w.mean, mean, rel_tol=1e-12, abs_tol=1e-9)
        assert (w.org, w.device) == ("o", "pi")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    offset=st.floats(min_value=-100, max_value=3 * 3600, allow_nan=False).map(lambda t: round(t, 3)),
    length=st.floats(min_value=0.5, max_value=4 * 3600, allow_nan=False).map(lambda t: round(t, 3)),
    every=st.one_of(
        st.integers(min_value=1, max_value=5000).filter(lambda n: n % 60 != 0).map(float),
        st.sampled_from([0.5, 2.5, 7.25, 45.0]),
    ),
    which=st.sampled_from([(None, None), ("bme280", None), (None, "co2"), ("scd41", "temperature")]),
)
def test_windows_of_the_readings_equal_their_aggregates(
    raw_store: Any, offset: float, length: float, every: float, which: tuple[str | None, str | None]
) -> None:
    """Test that windows read from the readings (a width of no whole minutes) hold exactly each
    window's readings within the range, whatever the range's start, end and width: count, mean,
    min and max, ordered by window, sensor and quantity."""
    store, recs = raw_store
    start, end = T0 + offset, T0 + offset + length
    sensor, quantity = which
    got = store.windows("o", "pi", start, end, every, sensor=sensor, quantity=quantity)
    _assert_windows(got, _want(recs, start, end, every, sensor, quantity))


def test_windows_read_one_by_one_or_grouped_by_a_sort_are_the_same(
    raw_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that windows read one index seek at a time (up to ``_WINDOW_INDEX_MAX`` windows per
    read) and beyond it (grouped with a sort) are the same, from the readings and from the rollups
    (2, 5 and 10 rows per window)."""
    import gateway.store.sqlite as sqlite_store

    store, _ = raw_store
    cases = [
        (T0 + 0.5, T0 + 2 * 3600 + 0.25, 7.0),
        (T0 - 30, T0 + 3 * 3600, 120.0),
        (T0 + 61, T0 + 9000, 600.0),
        (T0 + 61, T0 + 3 * 3600, 1500.0),
        (T0 - 30, T0 + 3 * 3600, 3000.0),
    ]
    seeks = [store.windows("o", "pi", *case) for case in cases]
    assert all(len(found) > 3 for found in seeks)
    monkeypatch.setattr(sqlite_store, "_WINDOW_INDEX_MAX", 3)
    with SqliteStore(store.path) as grouped:  # a new connection: its window_index is empty
        assert [grouped.windows("o", "pi", *case) for case in cases] == seeks


@pytest.fixture(scope="module")
def days_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two days and a bit of three series at irregular times (a quarter second to five minutes
    apart, many on a window's first instant), written in shuffled batches with redeliveries and a
    refresh now and then."""
    rng = random.Random(24)
    recs = []
    for sensor, quantity in _SERIES:
        t = T0 + rng.randint(0, 60)
        while t < T0 + 2.2 * DAY:
            recs.append(Record("o", "pi", sensor, quantity, round(rng.uniform(-20, 40), 2), t))
            t += rng.choice([0.25, 1.0, 2.0, 5.0, 17.0, 30.0, 61.0, 117.5, 300.0])
    shuffled = recs[:]
    rng.shuffle(shuffled)
    store = SqliteStore(tmp_path_factory.mktemp("days") / "s.db")
    for i in range(0, len(shuffled), 2000):
        store.write(shuffled[i : i + 2000])
        store.write(shuffled[i : i + 50])  # a redelivery
        if i % 6000 == 0:
            store.refresh_rollups()
    yield store, recs
    store.close()


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    offset=st.one_of(
        st.floats(min_value=-3600, max_value=2.2 * DAY, allow_nan=False).map(lambda t: round(t, 2)),
        st.integers(min_value=-60, max_value=3200).map(lambda n: n * 60.0),  # on a minute
    ),
    length=st.one_of(
        st.floats(min_value=0.5, max_value=2.5 * DAY, allow_nan=False).map(lambda t: round(t, 2)),
        st.integers(min_value=1, max_value=3600).map(lambda n: n * 60.0),
    ),
    every=st.one_of(
        st.sampled_from([7.0, 7.5, 45.0]),  # from the readings
        st.sampled_from([5.0, 10.0, 30.0, 90.0]),  # the 5- and 30-second rollups
        st.sampled_from([60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0]),  # minute ones
        st.sampled_from([3600.0, 7200.0, 10_800.0, 21_600.0, 43_200.0, DAY, 2 * DAY]),  # hour ones
    ),
    which=st.sampled_from([(None, None), ("bme280", None), (None, "co2"), ("scd41", "temperature")]),
)
def test_columns_of_every_read_equal_the_readings(
    days_store: Any, offset: float, length: float, every: float, which: tuple[str | None, str | None]
) -> None:
    """Test that a series' columns (``series_windows``, what charts read: each series read on its
    own, its reads' rows joined) hold each window's readings, for any range, width and filter:
    from the readings (widths of no 5 s multiple), the 5- and 30-second rollups with the readings
    at the ends, and the rollups (a range widened to its whole minutes, or hours for whole hours),
    a window made of two reads' rows included; and that ``windows`` holds the same windows one by
    one, ordered by start, sensor and quantity."""
    store, recs = days_store
    start, end = T0 + offset, T0 + offset + length
    sensor, quantity = which
    lo, hi = start, end
    if every % 60 == 0:
        edge = 3600 if every % 3600 == 0 else 60
        lo, hi = start - start % edge, math.ceil(end / edge) * edge
    want: dict[tuple[str, str], list[tuple[float, int, float, float, float]]] = {}
    for w_start, w_sensor, w_quantity, *rest in _want(recs, lo, hi, every, sensor, quantity):
        want.setdefault((w_sensor, w_quantity), []).append((w_start, *rest))  # type: ignore[arg-type]
    got = store.series_windows("o", "pi", start, end, every, sensor=sensor, quantity=quantity)
    assert [(s.org, s.device, s.sensor, s.quantity) for s in got] == [("o", "pi", *k) for k in sorted(want)]
    for s in got:
        rows = want[(s.sensor, s.quantity)]
        assert (s.starts, s.counts, s.mins, s.maxes) == tuple(
            [row[i] for row in rows] for i in (0, 1, 3, 4)
        ), every
        assert all(
            math.isclose(a, row[2], rel_tol=1e-12, abs_tol=1e-9) for a, row in zip(s.means, rows, strict=True)
        )
    assert store.windows("o", "pi", start, end, every, sensor=sensor, quantity=quantity) == windows_of(got)


def test_a_year_of_hourly_windows_reads_the_hour_rollups(tmp_path: Path) -> None:
    """Test that a year-long chart is answered from the hour rollups: one row per hour, fast."""
    d0 = T0 - T0 % DAY
    recs = [
        Record("o", "pi", "s", "co2", 400.0 + (h % 24), d0 + h * 3600 + m * 600)
        for h in range(24 * 365)
        for m in (0, 3)
    ]
    with SqliteStore(tmp_path / "s.db") as store:
        store.write(recs)
        rows = store.windows("o", "pi", d0, d0 + 366 * DAY, 86_400.0)
        assert len(rows) == 365 and all(w.count == 48 for w in rows)
        assert rows[0].min == 400.0 and rows[0].max == 423.0


def test_retention_per_org_deletes_old_readings_and_keeps_rollups(tmp_path: Path) -> None:
    """Test that retention deletes an org's old readings (counted), keeps rollups, spares other orgs."""
    now = T0 + 30 * DAY
    old = [
        Record(org, "pi-" + org, "s", "humidity", 50.0, T0 + i * 60) for org in ("a", "b") for i in range(10)
    ]
    new = [Record(org, "pi-" + org, "s", "humidity", 60.0, now - 60) for org in ("a", "b")]
    with SqliteStore(tmp_path / "s.db") as store:
        store.write(old + new)
        store.set_retention("a", raw_days=7, minute_days=400)
        assert store.apply_retention(now) == 10
        assert [len(store.readings(o, "pi-" + o, 0, 2e9)) for o in ("a", "b")] == [1, 11]
        assert {d.device: d.readings for d in store.devices()} == {"pi-a": 1, "pi-b": 11}
        assert (
            sum(w.count for w in store.windows("a", "pi-a", T0, now, 3600)) == 11
        )  # rollups outlive readings
        store.set_retention("a", raw_days=7, minute_days=1, hour_days=1)
        store.apply_retention(now)
        assert sum(w.count for w in store.windows("a", "pi-a", T0, now, 60)) == 1


def test_every_rollup_width_equals_the_readings(tmp_path: Path) -> None:
    """Test that windows read from each rollup (1 min to 1 day) and from multiples of them equal
    the aggregates of the readings, after shuffled batches, redeliveries and overwrites."""
    rng = random.Random(9)
    d0 = T0 - T0 % DAY
    recs = [
        Record("o", "pi", "s", "temperature", round(rng.uniform(-5, 30), 2), d0 + t * 97.25)
        for t in range(3 * 900)  # three days and a bit
    ]
    shuffled = recs[:]
    rng.shuffle(shuffled)
    with SqliteStore(tmp_path / "s.db") as store:
        store.write([replace(r, value=99.0) for r in recs[:500]])  # overwritten below
        for i in range(0, len(shuffled), 400):
            store.write(shuffled[i : i + 400])
            store.write(shuffled[i : i + 40])  # a redelivery
            if i == 800:
                store.refresh_rollups()  # later writes re-dirty minutes, hours and days
        end = recs[-1].time + 1
        more = (10.0, 15.0, 90.0, 150.0, 600.0, 1800.0, 3000.0, 7200.0, 21_600.0, 36_000.0, 172_800.0)
        for every in (*FINE_WIDTHS, *ROLLUP_WIDTHS, *more):
            got = store.windows("o", "pi", d0, end, every)
            want: dict[float, list[float]] = {}
            for r in recs:
                want.setdefault(r.time - r.time % every, []).append(r.value)
            assert [w.start for w in got] == sorted(want), every
            for w in got:
                values = want[w.start]
                assert (w.count, w.min, w.max) == (len(values), min(values), max(values)), every
                assert abs(w.mean - sum(values) / len(values)) < 1e-9
        with sqlite3.connect(store.path) as conn:
            widths = dict(conn.execute("SELECT width, count(*) FROM rollups GROUP BY width").fetchall())
        assert sorted(widths) == [*FINE_WIDTHS, *ROLLUP_WIDTHS]
        assert widths[86_400] == len({r.time - r.time % DAY for r in recs}) == 4


def _rollup_rows(path: Path) -> dict[tuple[int, int, float], tuple[float, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT series_id, width, start, count, sum, min, max FROM rollups").fetchall()
    return {(sid, width, start): tuple(rest) for sid, width, start, *rest in rows}


def test_a_version_1_file_gets_the_coarser_rollups_when_opened(tmp_path: Path) -> None:
    """Test that a store file of schema version 1 (minute and hour rollups only) is upgraded on
    open: its 5- and 15-minute, 3- and 12-hour and day rollups are computed once, equal to those
    a store of this version keeps on write, and charts read them (the 5- and 30-second ones of its
    newest day: :func:`test_a_version_2_file_gets_the_fine_rollups_of_its_newest_day`)."""
    rng = random.Random(5)
    d0 = T0 - T0 % DAY
    recs = [
        Record("o", f"pi-{d}", "s", q, round(rng.uniform(0, 100), 3), d0 + t * 131.0)
        for d in range(2)
        for q in ("co2", "humidity")
        for t in range(2 * 660)
    ]
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        store.write(recs)
        store.refresh_rollups()
    want = {k: v for k, v in _rollup_rows(path).items() if k[1] >= 60}
    with sqlite3.connect(path) as conn:  # what a version-1 store left
        conn.execute("DELETE FROM rollups WHERE width NOT IN (60, 3600)")
        conn.execute("DROP TABLE fine_rollups")
        conn.execute("PRAGMA user_version = 1")
    assert len(_rollup_rows(path)) < len(want)
    with SqliteStore(path) as store:
        got = {k: v for k, v in _rollup_rows(path).items() if k[1] >= 60}
        assert got.keys() == want.keys()
        for key, row in want.items():
            assert got[key][0] == row[0] and got[key][2:] == row[2:], key
            assert math.isclose(got[key][1], row[1], rel_tol=1e-12), key
        days = store.windows("o", "pi-1", d0, d0 + 2 * DAY, DAY, quantity="co2")
        assert [w.count for w in days] == [660, 660]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    upgraded = _rollup_rows(path)
    with SqliteStore(path):  # opened again: nothing to upgrade
        assert _rollup_rows(path) == upgraded


def test_retention_of_the_coarser_rollups(tmp_path: Path) -> None:
    """Test that the 5- and 15-minute rollups are kept as long as the minute ones, the 3-hour,
    12-hour and day rollups as long as the hour ones."""
    now = T0 + 30 * DAY
    with SqliteStore(tmp_path / "s.db") as store:
        store.write([Record("a", "pi", "s", "humidity", 50.0, T0 + i * 600) for i in range(300)])
        store.set_retention("a", raw_days=None, minute_days=10)
        store.apply_retention(now)
        with sqlite3.connect(store.path) as conn:
            widths = dict(conn.execute("SELECT width, count(*) FROM rollups GROUP BY width").fetchall())
        assert widths.keys() == {3600, 10800, 43200, 86400}  # fine ones: the last two days
        assert sum(w.count for w in store.windows("a", "pi", T0, now, DAY)) == 300
        store.set_retention("a", raw_days=None, minute_days=10, hour_days=10)
        store.apply_retention(now)
        assert store.windows("a", "pi", T0, now, DAY) == []
        assert sum(w.count for w in store.windows("a", "pi", T0, now, 7)) == 300  # from the readings


def test_coarser_rollups_never_widen_a_range_beyond_its_minutes_or_hours(tmp_path: Path) -> None:
    """Test that windows of 15 minutes, 12 hours or days over a range that does not start and end
    on their boundaries hold the readings of the range widened to whole minutes (whole hours for
    hour multiples), as minute and hour rollups alone gave: never a whole day at an edge."""
    rng = random.Random(11)
    d0 = T0 - T0 % DAY
    recs = [
        Record("o", "pi", "s", q, round(rng.uniform(0, 50), 2), d0 + t * 37.0)
        for q in ("co2", "temperature")
        for t in range(4 * 2400)  # about four days
    ]
    with SqliteStore(tmp_path / "s.db") as store:
        store.write(recs)
        start, end = d0 + 5 * 3600 + 17 * 60 + 5, d0 + 3 * DAY + 7 * 3600 + 41 * 60 + 30
        for every in (300.0, 900.0, 1800.0, 10_800.0, 43_200.0, DAY, 2 * DAY):
            edge = 3600 if every % 3600 == 0 else 60
            lo, hi = start - start % edge, math.ceil(end / edge) * edge
            want: dict[tuple[float, str], list[float]] = {}
            for r in recs:
                if lo <= r.time < hi:
                    want.setdefault((r.time - r.time % every, r.quantity), []).append(r.value)
            got = store.windows("o", "pi", start, end, every)
            assert [(w.start, w.quantity) for w in got] == sorted(want), every
            for w in got:
                values = want[(w.start, w.quantity)]
                assert (w.count, w.min, w.max) == (len(values), min(values), max(values)), every
                assert abs(w.mean - sum(values) / len(values)) < 1e-9


def _rollups_from_readings(path: Path) -> dict[tuple[int, int, float], tuple[int, float, float, float]]:
    """Every tier's rollups recomputed from the readings, as the rollups table keys them."""
    out: dict[tuple[int, int, float], tuple[int, float, float, float]] = {}
    with sqlite3.connect(path) as conn:
        for width in (*FINE_WIDTHS, *ROLLUP_WIDTHS):
            for sid, start, *rest in conn.execute(
                f"SELECT series_id, CAST(time / {width} AS INTEGER) * {width}.0 AS w, count(*), sum(value), "
                "min(value), max(value) FROM readings GROUP BY series_id, w"
            ):
                out[(sid, width, start)] = tuple(rest)  # type: ignore[assignment]
    return out


def _assert_rollups_equal(got: dict[tuple[int, int, float], tuple[float, ...]], want: dict[Any, Any]) -> None:
    assert sorted(got) == sorted(want)
    for key, (count, total, low, high) in want.items():
        assert got[key][0] == count and (got[key][2], got[key][3]) == (low, high), key
        assert math.isclose(got[key][1], total, rel_tol=1e-12, abs_tol=1e-9), key


def test_a_writer_skips_the_refresh_another_writer_of_the_file_did_within_its_period(tmp_path: Path) -> None:
    """Test that of two writers of one file (two connections), the second skips a refresh that
    the first did less than a period ago, and that skipping loses nothing: the minutes the second
    wrote, a late one among them, are in the next refresh of either."""
    path = tmp_path / "s.db"
    with SqliteStore(path) as a, SqliteStore(path) as b:
        a.write([Record("o", "pi", "s", "t", 1.0, T0 + 5)])
        assert b.refresh_rollups_if_due(1000.0, 5.0) == 1  # nobody refreshed yet
        a.write([Record("o", "pi", "s", "t", 3.0, T0 + 10)])
        b.write([Record("o", "pi", "s", "t", 2.0, T0 + 65), Record("o", "pi", "s", "t", 4.0, T0 - DAY)])
        assert a.refresh_rollups_if_due(1004.0, 5.0) is None  # b did, 4 s ago
        assert b.refresh_rollups_if_due(1004.9, 5.0) is None  # b itself too
        assert _rollup_rows(path)[(1, 60, T0)][:2] == (1, 1.0)  # still as b's refresh left it
        assert a.refresh_rollups_if_due(1005.0, 5.0) == 3  # due: every marked minute, of both
        assert b.refresh_rollups_if_due(1000.5, 5.0) is None  # a refreshed in b's future, within a period
        b.write([Record("o", "pi", "s", "t", 5.0, T0 + 20)])
        assert b.refresh_rollups_if_due(980.0, 5.0) == 1  # the clock went back by more: due
        assert a.refresh_rollups_if_due(1010.0, 5.0) == 0  # due, nothing marked
        _assert_rollups_equal(_rollup_rows(path), _rollups_from_readings(path))


def _write_and_refresh(path: str, writer: int, every_s: float, barrier: Any, results: Any) -> None:
    rng = random.Random(writer)
    # Every writer writes readings in the same minutes of the same series (interleaved times).
    recs = [
        Record("o", f"pi-{i % 3}", "s", "t", round(rng.uniform(0, 50), 2), T0 + i * 7.25 + writer * 0.5)
        for i in range(600)
    ]
    rng.shuffle(recs)
    refreshed: list[int | None] = []
    with SqliteStore(path) as store:
        barrier.wait()
        for i in range(0, len(recs), 50):
            store.write(recs[i : i + 50])
            store.write(recs[i : i + 5])  # a redelivery
            refreshed.append(store.refresh_rollups_if_due(time.time(), every_s))
        # A late reading, into a minute refreshed long ago (by whichever writer).
        store.write([Record("o", "pi-0", "s", "t", 99.0 + writer, T0 + 3.0 + writer)])
        refreshed.append(store.refresh_rollups_if_due(time.time(), every_s))
    results.put(refreshed)


@pytest.mark.parametrize("every_s", [0.0, 3600.0])
def test_writer_processes_on_one_file_keep_its_rollups_equal_to_the_readings(
    tmp_path: Path, every_s: float
) -> None:
    """Test that several writer processes writing the same minutes and refreshing on their period
    (0: every write; an hour: the first refresh stands for the others) leave every minute that is
    not marked dirty exact, and after a refresh every tier equal to a recompute from the readings,
    late readings included. With an hour's period exactly one refresh of all writers ran; with 0
    the last call of each refreshed, so nothing is left marked."""
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_write_and_refresh, args=(str(path), w, every_s, barrier, results))
        for w in range(4)
    ]
    for proc in procs:
        proc.start()
    refreshed = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    ran = [n for calls in refreshed for n in calls if n is not None]
    if every_s > 0:
        assert len(ran) == 1 and ran[0] > 0
    want = _rollups_from_readings(path)
    with sqlite3.connect(path) as conn:
        dirty = set(conn.execute("SELECT series_id, minute FROM rollup_dirty").fetchall())
    got = _rollup_rows(path)
    clean = {k: v for k, v in want.items() if k[1] == 60 and (k[0], k[2]) not in dirty}
    if every_s == 0:
        assert not dirty  # each writer's last call refreshed
    _assert_rollups_equal({k: got[k] for k in clean}, clean)
    with SqliteStore(path) as store:
        store.refresh_rollups()
        assert store.count_readings() == 4 * 601
    _assert_rollups_equal(_rollup_rows(path), want)


def _fine_recs(rng: random.Random, start: float, seconds: float) -> list[Record]:
    """Readings of the three series at 1 Hz or so: many on a 5- or 30-second window's first instant,
    some a quarter second apart, gaps of up to two minutes."""
    recs = []
    for sensor, quantity in _SERIES:
        t = start + rng.randint(0, 3)
        while t < start + seconds:
            recs.append(Record("o", "pi", sensor, quantity, round(rng.uniform(-20, 40), 2), t))
            t += rng.choice([0.25, 1.0, 1.0, 1.0, 2.0, 5.0, 30.0, 117.5])
    return recs


@pytest.fixture(scope="module")
def fine_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two hours of three series written as a gateway does: shuffled batches, redeliveries and
    overwrites, a refresh now and then, and late readings (an outbox draining an outage) into
    minutes refreshed long before."""
    rng = random.Random(33)
    recs = _fine_recs(rng, T0, 2 * 3600)
    late = [r for r in recs if r.time < T0 + 1800 and rng.random() < 0.3]
    held = set(late)
    first = [r for r in recs if r not in held]
    rng.shuffle(first)
    store = SqliteStore(tmp_path_factory.mktemp("fine") / "s.db")
    store.write([replace(r, value=-99.0) for r in first[:300]])  # overwritten below
    for i in range(0, len(first), 700):
        store.write(first[i : i + 700])
        store.write(first[i : i + 30])  # a redelivery
        if i % 2100 == 0:
            store.refresh_rollups()
    store.refresh_rollups()
    store.write(late)  # after their minutes were refreshed: they mark them again
    yield store, recs
    store.close()


def _fine_count(store: SqliteStore) -> dict[int, int]:
    with sqlite3.connect(store.path) as conn:
        return dict(conn.execute("SELECT width, count(*) FROM rollups WHERE width < 60 GROUP BY width"))


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    offset=st.one_of(
        st.floats(min_value=-100, max_value=2 * 3600, allow_nan=False).map(lambda t: round(t, 2)),
        st.integers(min_value=-20, max_value=1440).map(lambda n: n * 5.0),  # on a 5-second edge
    ),
    length=st.one_of(
        st.floats(min_value=0.5, max_value=2.5 * 3600, allow_nan=False).map(lambda t: round(t, 2)),
        st.integers(min_value=1, max_value=1800).map(lambda n: n * 5.0),
    ),
    every=st.sampled_from([5.0, 10.0, 15.0, 25.0, 30.0, 45.0, 55.0, 90.0, 150.0, 330.0]),
    which=st.sampled_from([(None, None), ("bme280", None), (None, "co2"), ("scd41", "temperature")]),
)
def test_windows_of_the_fine_rollups_equal_their_readings(
    fine_store: Any, offset: float, length: float, every: float, which: tuple[str | None, str | None]
) -> None:
    """Test that windows of a multiple of 5 or 30 s (not of a minute), read from the 5- and
    30-second rollups with the readings at the range's ends, hold exactly each window's readings
    within the range, for any start, end and width, with a sensor or quantity filter, readings on
    the windows' edges and late readings written after a refresh: count, mean, min and max."""
    store, recs = fine_store
    start, end = T0 + offset, T0 + offset + length
    sensor, quantity = which
    got = store.windows("o", "pi", start, end, every, sensor=sensor, quantity=quantity)
    _assert_windows(got, _want(recs, start, end, every, sensor, quantity))
    assert _fine_count(store).keys() == set(FINE_WIDTHS)  # read from them (refreshed before)


def test_a_chart_of_fine_windows_reads_one_rollup_row_per_window(
    fine_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that 5- and 30-second windows whose range starts on a window read the rollup of their
    width as it is, and only the range's last partial window from the readings."""
    import gateway.store.sqlite as sqlite_store

    store, recs = fine_store
    reads: list[tuple[str, str]] = []
    statement = sqlite_store.SqliteStore._window_statement

    def spy(self: SqliteStore, conn: Any, i: int, table: str, col: str, aggregates: str, *rest: Any) -> Any:
        reads.append((table.split(" AS ")[0], aggregates))
        return statement(self, conn, i, table, col, aggregates, *rest)

    monkeypatch.setattr(sqlite_store.SqliteStore, "_window_statement", spy)
    for every in (5.0, 30.0):
        reads.clear()
        start, end = T0 + 600, T0 + 4000 + 2.5
        got = store.windows("o", "pi", start, end, every)
        _assert_windows(got, _want(recs, start, end, every, None, None))
        assert reads == [("rollups", sqlite_store._PLAIN), ("readings", sqlite_store._RAW_AGGREGATES)]


def _fine_rows(path: Path) -> dict[tuple[int, int, float], tuple[float, ...]]:
    return {k: v for k, v in _rollup_rows(path).items() if k[1] in FINE_WIDTHS}


def test_late_readings_reach_the_fine_rollups_through_the_sinks_refresh(tmp_path: Path) -> None:
    """Test that readings arriving hours after their minutes were refreshed (an outbox draining a
    6-hour outage), written and refreshed as the ``sqlite`` sink does (``refresh_rollups_if_due``),
    land in their 5- and 30-second rollups: every rollup equals a recompute from the readings."""
    rng = random.Random(8)
    path = tmp_path / "s.db"
    recs = _fine_recs(rng, T0, 8 * 3600)
    outage = [r for r in recs if T0 + 3600 <= r.time < T0 + 7 * 3600]
    held = set(outage)
    live = [r for r in recs if r not in held]
    with SqliteStore(path) as store:
        now = 1000.0
        for i in range(0, len(live), 500):
            store.write(live[i : i + 500])
            assert store.refresh_rollups_if_due(now, 5.0) is not None
            now += 5
        before = _fine_rows(path)
        for i in range(0, len(outage), 2000):  # the drain, oldest first
            store.write(outage[i : i + 2000])
            store.refresh_rollups_if_due(now, 5.0)
            now += 2
        assert store.refresh_rollups_if_due(now + 5, 5.0) is not None  # the drain's last minutes
        after = _fine_rows(path)
        assert len(after) > len(before)
        _assert_rollups_equal(_rollup_rows(path), _rollups_from_readings(path))
        start, end = T0 + 1800 + 2.5, T0 + 7.5 * 3600
        _assert_windows(store.windows("o", "pi", start, end, 30.0), _want(recs, start, end, 30.0, None, None))


def test_a_version_2_file_gets_the_fine_rollups_of_its_newest_day(tmp_path: Path) -> None:
    """Test that a store file of schema version 2 (no 5- or 30-second rollups) is upgraded on open:
    the fine rollups of its newest day of readings are computed, equal to those kept on write, and
    windows of fine widths over older times, or across the day's start, read the readings: every
    window equals its readings, before and after a late reading into the older times."""
    rng = random.Random(17)
    d0 = T0 - T0 % DAY
    recs = [
        Record("o", "pi", "s", q, round(rng.uniform(0, 100), 3), d0 + t * 12.5)
        for q in ("co2", "humidity")
        for t in range(int(1.5 * DAY / 12.5))
    ]
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        store.write(recs)
        store.refresh_rollups()
    native = _fine_rows(path)
    with sqlite3.connect(path) as conn:  # what a version-2 store left
        conn.execute("DELETE FROM rollups WHERE width < 60")
        conn.execute("DROP TABLE fine_rollups")
        conn.execute("PRAGMA user_version = 2")
    with SqliteStore(path) as store:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
            since = conn.execute("SELECT complete_from FROM fine_rollups").fetchone()[0]
        newest = max(r.time for r in recs)
        assert since == math.floor((newest - DAY) / 60) * 60
        upgraded = _fine_rows(path)
        assert upgraded == {k: v for k, v in native.items() if k[2] >= since}
        for start, end, every in (
            (d0, d0 + 1.5 * DAY, 30.0),  # half before the fine rollups
            (since - 3600 + 2, since + 3600 + 1, 25.0),  # a window across their start
            (since - 90, since + 90, 5.0),
        ):
            got = store.windows("o", "pi", start, end, every)
            _assert_windows(got, _want(recs, start, end, every, None, None))
        late = Record("o", "pi", "s", "co2", 1000.0, since - 200.0)
        store.write([late])
        start, end = since - 600, since + 600
        got = store.windows("o", "pi", start, end, 30.0)
        _assert_windows(got, _want([*recs, late], start, end, 30.0, None, None))
    with SqliteStore(path):  # opened again: nothing to upgrade
        assert _fine_rows(path).keys() >= upgraded.keys()


def test_retention_of_the_fine_rollups_follows_the_readings(tmp_path: Path) -> None:
    """Test that the 5- and 30-second rollups are deleted with the readings (``raw_days``), the
    window the cut-off falls in kept for the readings after it, and that windows of fine widths then
    equal the readings left; minute and hour rollups outlive them."""
    rng = random.Random(2)
    now = T0 + 3 * DAY
    recs = _fine_recs(rng, now - 2 * 3600, 2 * 3600)
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        store.write(recs)
        store.refresh_rollups()
        raw_days = (3600 + 17.25) / DAY  # the cut-off: 1 h 17.25 s before now, inside a window
        store.set_retention("o", raw_days=raw_days)
        cutoff = now - raw_days * 86_400
        store.apply_retention(now)
        left = [r for r in recs if r.time >= cutoff]
        assert store.count_readings() == len(left) < len(recs)
        _assert_rollups_equal(
            _fine_rows(path),
            {k: v for k, v in _rollups_from_readings(path).items() if k[1] in FINE_WIDTHS},
        )
        for every in (5.0, 30.0, 45.0):
            start, end = now - 3 * 3600, now
            got = store.windows("o", "pi", start, end, every)
            _assert_windows(got, _want(left, start, end, every, None, None))
        assert sum(w.count for w in store.windows("o", "pi", now - 3 * 3600, now, 60.0)) == len(recs)


def test_fine_rollups_are_kept_two_days_and_older_windows_read_the_readings(tmp_path: Path) -> None:
    """Test that applying retention (with or without settings) keeps the 5- and 30-second rollups
    of the last two days only and records so: windows of fine widths before then, read by a
    store opened before the retention ran, by one opened after, and after a late reading there,
    equal their readings; the sink's refresh computes no fine rollup before then."""
    rng = random.Random(12)
    now = T0 + 4 * DAY
    recs = [
        Record("o", "pi", "s", q, round(rng.uniform(0, 100), 2), now - 3 * DAY + t * 20.0)
        for q in ("co2", "humidity")
        for t in range(int(3 * DAY / 20.0))
    ]
    path = tmp_path / "s.db"
    with SqliteStore(path) as before, SqliteStore(path) as writer:
        writer.write(recs)
        writer.refresh_rollups()
        assert min(k[2] for k in _fine_rows(path)) < now - 2 * DAY - 3600
        writer.apply_retention(now)  # no settings: the readings stay
        horizon = math.floor((now - 2 * DAY) / 60) * 60
        assert min(k[2] for k in _fine_rows(path)) == horizon
        assert writer.count_readings() == len(recs)
        late = Record("o", "pi", "s", "co2", 500.0, now - 2.5 * DAY + 7.0)
        writer.write([late])
        writer.refresh_rollups()
        assert min(k[2] for k in _fine_rows(path)) == horizon
        for store in (before, writer):
            for start, end, every in ((now - 3 * DAY, now, 30.0), (horizon - 600 + 1, horizon + 600, 5.0)):
                got = store.windows("o", "pi", start, end, every)
                _assert_windows(got, _want([*recs, late], start, end, every, None, None))
