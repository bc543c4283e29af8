"""Tests of gateway/store/sqlite.py's rollups, downsampled windows and per-org retention."""

from __future__ import annotations

import random
from pathlib import Path

from gateway.store import SqliteStore
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
