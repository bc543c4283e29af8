"""The embedded store (gateway/store/sqlite.py) against a bare SQLite insert of the same rows.

The baseline is the least any SQLite store must do: one executemany into a plain table in WAL
mode with synchronous=FULL, one commit per batch. The ratio is what the store's series table,
upsert and device summary cost on top. Read figures: a one-hour range of one device out of a day
of 20 devices, against a bare indexed SELECT. The demo's first start: the days of history
``suitcase.demo_history.backfill_history`` writes for two Pis, against a bare insert of as many rows.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks._timing import Figure, best_of
from gateway.store import SqliteStore
from kits.wire import Record
from suitcase.demo import DEMO_ORG, _agent_config
from suitcase.demo_history import backfill_history

__all__ = ["run"]

START = 1_790_000_000.0
QUANTITIES = ("temperature", "humidity", "pressure")


def _batches(devices: int, seconds: int, batch: int) -> list[list[Record]]:
    rows = [
        Record("aarhus", f"pi-{d}", "bme280", q, 20.0 + (t % 60) / 10, START + t)
        for t in range(0, seconds, 10)
        for d in range(devices)
        for q in QUANTITIES
    ]
    return [rows[i : i + batch] for i in range(0, len(rows), batch)]


def _baseline(path: Path, batches: list[list[Record]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE r (org, device, sensor, quantity, time, value)")
    conn.execute("CREATE INDEX r_dt ON r (device, time)")
    for batch in batches:
        with conn:
            conn.executemany(
                "INSERT INTO r VALUES (?, ?, ?, ?, ?, ?)",
                [(r.org, r.device, r.sensor, r.quantity, r.time, r.value) for r in batch],
            )
    conn.close()


def _demo_backfill(folder: Path, counter: Iterator[int]) -> tuple[float, float, int]:
    """Time the demo's first-start backfill into a fresh store, and a bare insert of as many rows."""
    configs = [_agent_config(i, "127.0.0.1", 1883, 1.0) for i in range(2)]
    written = 0

    def backfill() -> None:
        nonlocal written
        store = SqliteStore(folder / f"demo{next(counter)}.sqlite")
        written = backfill_history(store, configs, DEMO_ORG, START)
        store.close()

    seconds = best_of(backfill, 3)
    rows = [Record(DEMO_ORG, "demo-pi-1", "bme280", "temperature", 20.0, START + i) for i in range(written)]
    baseline = best_of(lambda: _baseline(folder / f"demo-b{next(counter)}.sqlite", [rows]), 3)
    return seconds, baseline, written


def run(devices: int = 20, seconds: int = 86_400, batch: int = 5_000) -> list[Figure]:
    batches = _batches(devices, seconds, batch)
    total = sum(len(b) for b in batches)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counter = iter(range(1000))

        def store_write() -> None:
            store = SqliteStore(folder / f"s{next(counter)}.sqlite")
            for b in batches:
                store.write(b)
            store.close()

        def baseline_write() -> None:
            _baseline(folder / f"b{next(counter)}.sqlite", batches)

        write = best_of(store_write, 3)
        baseline = best_of(baseline_write, 3)

        store = SqliteStore(folder / "read.sqlite")
        for b in batches:
            store.write(b)
        _baseline(folder / "read-baseline.sqlite", batches)
        plain = sqlite3.connect(folder / "read-baseline.sqlite")
        hour = (START + 43_200, START + 46_800)
        rows = len(store.readings("aarhus", "pi-3", *hour))
        read = best_of(lambda: [store.readings("aarhus", "pi-3", *hour) for _ in range(100)], 3)
        read_baseline = best_of(
            lambda: [
                plain.execute(
                    "SELECT * FROM r WHERE device = ? AND time >= ? AND time < ? ORDER BY time",
                    ("pi-3", *hour),
                ).fetchall()
                for _ in range(100)
            ],
            3,
        )
        plain.close()
        store.close()
        backfill, backfill_baseline, backfilled = _demo_backfill(folder, counter)
    return [
        Figure(
            "demo history backfill (2 Pis)",
            backfill,
            "bare sqlite insert",
            backfill_baseline,
            backfilled,
            "readings",
        ),
        Figure("store.write (5k batches)", write, "bare sqlite insert", baseline, total, "readings"),
        Figure(
            "store.readings (1 h, 1 device)",
            read,
            "bare indexed select",
            read_baseline,
            rows * 100,
            "readings",
        ),
    ]
