"""What the alert rounds have proven about series changing, so a round need not re-read them.

A "stuck" rule fires when every reading of a series in its window has one value. Once two readings
of a series are known to differ, at times ``t1 < t2``, every window that still holds ``t1`` also
holds ``t2`` (for ``t2 <= now``) and cannot be constant: that series is not stuck while
``now - window <= t1``. The rounds learn such pairs from the newest reading of every series (one
store call for all devices) compared with the newest of the round before, and from the windows
they do read. A device whose every series has such a pair inside the window is not read.

Only proofs are kept: readings are never rewritten with other values (a redelivered reading is the
same reading), so a pair stays true. Each server replica keeps its own (held by ``Resources``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from kits.wire import Record

__all__ = ["SeriesChanges"]

SeriesKey = tuple[str, str, str, str]  # org, device, sensor, quantity


class SeriesChanges:
    """Per series: the newest reading seen, and the times of the newest pair of readings known to
    differ in value."""

    def __init__(self, keep_s: float = 7 * 86400.0) -> None:
        self._newest: dict[SeriesKey, tuple[float, float]] = {}
        self._changed: dict[SeriesKey, tuple[float, float]] = {}
        self._keep_s = keep_s
        self._lock = threading.Lock()

    def observe_latest(self, records: Iterable[Record], now: float) -> None:
        """Record the newest reading of each series (``Reader.latest``); a value other than the
        previous newest proves a change after the previous newest's time."""
        with self._lock:
            for r in records:
                key = (r.org, r.device, r.sensor, r.quantity)
                before = self._newest.get(key)
                if before is not None and before[0] < r.time and before[1] != r.value:
                    self._prove(key, before[0], r.time)
                if before is None or r.time >= before[0]:
                    self._newest[key] = (r.time, r.value)
            self._forget(now)

    def observe_window(self, key: SeriesKey, readings: Sequence[tuple[float, float]]) -> None:
        """Record the newest change in a series' readings (time, value), oldest first."""
        for i in range(len(readings) - 1, 0, -1):
            if readings[i][1] != readings[i - 1][1]:
                with self._lock:
                    self._prove(key, readings[i - 1][0], readings[i][0])
                return

    def changed_within(self, key: SeriesKey, start: float, end: float) -> bool:
        """True when the series is known to hold two different values in ``[start, end)``."""
        with self._lock:
            pair = self._changed.get(key)
        return pair is not None and pair[0] >= start and pair[1] < end

    def _prove(self, key: SeriesKey, t1: float, t2: float) -> None:
        # Keep the newest pair: it stays inside the windows longest.
        known = self._changed.get(key)
        if known is None or t1 > known[0]:
            self._changed[key] = (t1, t2)

    def _forget(self, now: float) -> None:
        if len(self._changed) + len(self._newest) < 200_000:
            return
        horizon = now - self._keep_s
        self._changed = {k: t for k, t in self._changed.items() if t[0] >= horizon}
        self._newest = {k: v for k, v in self._newest.items() if v[0] >= horizon}
