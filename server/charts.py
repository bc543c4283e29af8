"""Chart queries: a series downsampled to at most N points, at a cost bounded by N, not by the data.

For each of N equal buckets of the range, the first reading in the bucket is found by one index
seek on the store's ``(series_id, time)`` primary key, so a year of 1/min readings costs the same
as an hour. This is point sampling (decimation): a short peak between two sampled points is not
shown; ``mode="mean"`` averages each bucket instead, scanning every reading in the range.

The embedded store (``gateway.store.sqlite``) has no downsampling read yet, so this module reads
its documented schema through a separate read-only connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["Series", "downsample"]

Mode = Literal["sample", "mean"]

_SAMPLE_SQL = """
WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i + 1 < :n)
SELECT r.time, r.value FROM b
JOIN readings AS r ON r.series_id = :sid AND r.time = (
    SELECT min(time) FROM readings
    WHERE series_id = :sid
      AND time >= max(:lo, :start + b.i * :step)
      AND time < min(:hi, :start + (b.i + 1) * :step)
)
ORDER BY r.time
"""

_MEAN_SQL = """
SELECT min(time), avg(value) FROM readings
WHERE series_id = :sid AND time >= :lo AND time < :hi
GROUP BY CAST((time - :start) / :step AS INTEGER) ORDER BY 1
"""


@dataclass
class Series:
    """One downsampled series: ``times`` and ``values`` of equal length."""

    device: str
    sensor: str
    quantity: str
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def downsample(
    store_path: Path,
    spans: list[tuple[str, float, float]],
    start: float,
    end: float,
    *,
    points: int = 1000,
    quantity: str | None = None,
    sensor: str | None = None,
    mode: Mode = "sample",
) -> list[Series]:
    """Return each series of the devices in ``spans`` between ``start`` and ``end``, downsampled.

    Args:
        store_path: the embedded store's file.
        spans: (device, from, to) windows: a deployment's device history, or one device's range.
        points: buckets across ``[start, end)``; each series has at most this many points.
    """
    if end <= start or points < 1 or not store_path.exists():
        return []
    step = (end - start) / points
    out: dict[tuple[str, str, str], Series] = {}
    with _connect(store_path) as conn:
        for device, span_from, span_to in spans:
            lo, hi = max(start, span_from), min(end, span_to)
            if hi <= lo:
                continue
            sql = "SELECT id, sensor, quantity FROM series WHERE device = ?"
            params: list[object] = [device]
            if quantity is not None:
                sql += " AND quantity = ?"
                params.append(quantity)
            if sensor is not None:
                sql += " AND sensor = ?"
                params.append(sensor)
            for sid, sensor_name, quantity_name in conn.execute(sql + " ORDER BY sensor, quantity", params):
                key = (device, sensor_name, quantity_name)
                series = out.setdefault(key, Series(device, sensor_name, quantity_name))
                args = {"sid": sid, "lo": lo, "hi": hi, "start": start, "step": step, "n": points}
                rows = conn.execute(_SAMPLE_SQL if mode == "sample" else _MEAN_SQL, args).fetchall()
                for time, value in rows:
                    series.times.append(time)
                    series.values.append(value)
    return list(out.values())
