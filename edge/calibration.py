"""Calibration (offset and scale from the server) and smoothing filters, per sensor and quantity.

Order: a raw value is filtered (median or moving average over the last ``window`` readings),
then calibrated (``value * scale + offset``). Both are linear or order statistics, so the order
does not change the result for a positive scale; filtering raw values keeps a filter's history
valid when a new calibration arrives.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Mapping

from kits.models import Calibration, SensorFilter

__all__ = ["Calibrator", "Filter"]


class Filter:
    """A median or moving-average filter over each quantity of one sensor."""

    def __init__(self, spec: SensorFilter) -> None:
        self.spec = spec
        self._history: dict[str, deque[float]] = {}

    def apply(self, values: Mapping[str, float]) -> dict[str, float]:
        """Add ``values`` to the history and return the filtered values."""
        out = {}
        for qty, value in values.items():
            history = self._history.setdefault(qty, deque(maxlen=self.spec.window))
            history.append(value)
            if self.spec.kind == "median":
                out[qty] = float(statistics.median(history))
            else:
                out[qty] = sum(history) / len(history)
        return out


class Calibrator:
    """The calibration records in force, by (sensor, quantity)."""

    def __init__(self, records: Iterable[Calibration] = ()) -> None:
        self._records = {(r.sensor, r.quantity): r for r in records}

    def apply(self, sensor: str, values: Mapping[str, float]) -> dict[str, float]:
        """Return ``values`` of ``sensor`` with its calibration applied."""
        out = {}
        for qty, value in values.items():
            rec = self._records.get((sensor, qty))
            out[qty] = value if rec is None else value * rec.scale + rec.offset
        return out

    def version(self, sensor: str | None = None) -> int | None:
        """The highest calibration version (of ``sensor``, or of the device); None if uncalibrated."""
        versions = [r.version for (s, _), r in self._records.items() if sensor is None or s == sensor]
        return max(versions) if versions else None
