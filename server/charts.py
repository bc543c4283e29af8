"""Chart queries: a series downsampled to at most N points, at a cost bounded by N, not by the data.

Every chart reads the store's downsampled windows as columns per series
(:meth:`gateway.store.Reader.series_windows`: no Python object per point): one window per point,
epoch-aligned, with its count, mean, min and max. The window width is rounded up to a multiple of
the store's rollups once it is that long (1, 5 or 15 min, 1, 3 or 12 h, 1 day), so the embedded
store answers from a few rollup rows per point and InfluxDB from the rollup tier of that width (one
point per window): a year of 1/min readings costs about as much as an hour.
Nothing here knows which backend runs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

from gateway.store import FINE_WIDTHS, ROLLUP_WIDTHS, Reader, SeriesWindows, Window
from kits.quantities import spec
from server.spans import DeviceSpan

__all__ = ["Series", "Statistic", "bucket_width", "count_sums", "downsample", "window_value"]

Statistic = Literal["mean", "min", "max"]


@dataclass
class Series:
    """One downsampled series: ``times`` (window starts) and ``values`` of equal length."""

    org: str
    device: str
    sensor: str
    quantity: str
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def bucket_width(span: float, points: int) -> float:
    """Return a window width (seconds) so ``span`` holds at most ``points`` epoch-aligned windows.

    The width is a whole number of seconds, or a multiple of the coarsest rollup
    (:data:`gateway.store.FINE_WIDTHS` and :data:`gateway.store.ROLLUP_WIDTHS`: 5 or 30 s, 1, 5 or
    15 min, 1, 3 or 12 h, 1 day) that still leaves at least half the points, so the store reads a
    few rollup rows per point instead of every reading (an hour: 5-second windows).
    """
    raw = span / max(points - 1, 1)  # an unaligned span may touch one window more
    # Whole seconds below every rollup: every backend then aligns its windows on the same instants.
    width = float(math.ceil(raw))
    for rollup in (*FINE_WIDTHS, *ROLLUP_WIDTHS):
        # At worst half the points, but a 7-day chart reads one 15-minute row per point instead
        # of 11 minute ones, and a year one 12-hour row instead of 9 hour ones.
        whole = math.ceil(raw / rollup) * rollup
        if whole <= 2 * raw:
            width = float(whole)
    return width


def downsample(
    store: Reader,
    spans: Sequence[DeviceSpan],
    start: float,
    end: float,
    *,
    points: int = 1000,
    quantity: str | None = None,
    sensor: str | None = None,
    statistic: Statistic = "mean",
) -> list[Series]:
    """Return each series of the devices in ``spans`` between ``start`` and ``end``, downsampled.

    Args:
        store: the store's read side.
        spans: (org, device, from, to) windows: a deployment's device history, or one device's range.
        points: at most this many points per series across ``[start, end)``.
        statistic: which of each window's mean, min or max is drawn.

    Raises:
        StoreError: the store could not be read.
    """
    if end <= start or points < 1:
        return []
    every = bucket_width(end - start, points)
    # Whole windows from the first: every backend then answers the same (a rolled-up window holds
    # its whole minute or hour, so a raw read starts at the window's start too).
    start = math.floor(start / every) * every
    out: dict[tuple[str, str, str], Series] = {}
    # A chart of means (or of sums: mean x count) asks for no min or max: on InfluxDB a short
    # chart's grouping of raw readings then costs about half.
    means_only = statistic == "mean"
    for org, device, span_from, span_to in spans:
        lo, hi = max(start, span_from), min(end, span_to)
        if hi <= lo:
            continue
        parts = store.series_windows(
            org, device, lo, hi, every, sensor=sensor, quantity=quantity, means_only=means_only
        )
        for part in parts:
            key = (device, part.sensor, part.quantity)
            series = out.get(key)
            if series is None:
                series = out[key] = Series(org, device, part.sensor, part.quantity)
            # The store's columns as they are: no Python per window (a 30-day chart has 7,200).
            series.times += part.starts
            series.values += _values_of(part, statistic)
    return sorted(out.values(), key=lambda s: (s.device, s.sensor, s.quantity))


def _values_of(part: SeriesWindows, statistic: Statistic) -> list[float]:
    """The values a chart draws for the windows of ``part`` (see :func:`window_value`)."""
    found = spec(part.quantity)
    if found is not None and found.summed:
        return list(map(_sum, part.means, part.counts))
    return part.means if statistic == "mean" else part.mins if statistic == "min" else part.maxes


def _sum(mean: float, count: int) -> float:
    return round(mean * count, 9)


_Value = Callable[[Window], float]
_STATISTIC: dict[str, _Value] = {
    "mean": operator.attrgetter("mean"),
    "min": operator.attrgetter("min"),
    "max": operator.attrgetter("max"),
}


def _sum_of(w: Window) -> float:
    return _sum(w.mean, w.count)


def _value_of(quantity: str, statistic: Statistic) -> _Value:
    """How :func:`window_value` reads the windows of ``quantity``."""
    found = spec(quantity)
    return _sum_of if found is not None and found.summed else _STATISTIC[statistic]


def window_value(w: Window, statistic: Statistic = "mean") -> float:
    """The value a chart draws for window ``w``: a count of events (``passes``) is the window's sum,
    whatever the statistic, since counts add up; anything else its mean, min or max."""
    return _value_of(w.quantity, statistic)(w)


def count_sums(
    store: Reader,
    spans: Sequence[DeviceSpan],
    start: float,
    end: float,
    *,
    per: Literal["hour", "day"],
    tz: tzinfo,
    quantity: str = "passes",
) -> list[Series]:
    """Return the sums of ``quantity`` (a count) per clock hour, or per day in ``tz``, of the devices
    in ``spans``: ``passes_per_hour`` or ``passes_per_day`` series, never means.

    Both are sums of the store's hour windows (its rollups), so an hour or a day costs one row.
    A day is the local calendar day (23 or 25 hours on a daylight-saving change).
    """
    name = f"{quantity}_per_{per}"
    lo = math.floor(start / 3600) * 3600
    sums: dict[tuple[str, str, str], dict[float, float]] = {}
    for org, device, span_from, span_to in spans:
        a, b = max(lo, span_from), min(end, span_to)
        if b <= a:
            continue
        for part in store.series_windows(org, device, a, b, 3600.0, quantity=quantity, means_only=True):
            into = sums.setdefault((org, device, part.sensor), {})
            for t, mean, count in zip(part.starts, part.means, part.counts, strict=True):
                if per == "hour":
                    bucket = t
                else:
                    day = datetime.fromtimestamp(t, tz).replace(hour=0, minute=0, second=0, microsecond=0)
                    bucket = day.timestamp()
                into[bucket] = into.get(bucket, 0.0) + mean * count
    out = []
    for (org, device, sensor), buckets in sorted(sums.items()):
        times = sorted(buckets)
        out.append(Series(org, device, sensor, name, times, [round(buckets[t], 9) for t in times]))
    return out
