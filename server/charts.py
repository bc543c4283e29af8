"""Chart queries: a series downsampled to at most N points, at a cost bounded by N, not by the data.

Every chart reads the store's downsampled windows (:meth:`gateway.store.Reader.windows`): one
window per point, epoch-aligned, with its count, mean, min and max. The window width is rounded up
to a multiple of the store's rollups once it is that long (1, 5 or 15 min, 1, 3 or 12 h, 1 day), so
the embedded store answers from a few rollup rows per point and InfluxDB from the rollup tier of
that width (one point per window): a year of 1/min readings costs about as much as an hour.
Nothing here knows which backend runs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

from gateway.store import ROLLUP_WIDTHS, Reader, Window
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
    (:data:`gateway.store.ROLLUP_WIDTHS`: 1, 5 or 15 min, 1, 3 or 12 h, 1 day) that still leaves at least
    half the points, so the store reads a few rollup rows per point instead of every reading.
    """
    raw = span / max(points - 1, 1)  # an unaligned span may touch one window more
    # Whole seconds below every rollup: every backend then aligns its windows on the same instants.
    width = float(math.ceil(raw))
    for rollup in ROLLUP_WIDTHS:
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
    for org, device, span_from, span_to in spans:
        lo, hi = max(start, span_from), min(end, span_to)
        if hi <= lo:
            continue
        windows = store.windows(org, device, lo, hi, every, sensor=sensor, quantity=quantity)
        for (sensor_name, name), part in _by_series(windows):
            series = out.get((device, sensor_name, name))
            if series is None:
                series = out[device, sensor_name, name] = Series(org, device, sensor_name, name)
            # Per series, not per window (a year-long chart has thousands): how a window gives its
            # value, and the lists built by map (no Python per window).
            series.times += map(_START, part)
            series.values += map(_value_of(name, statistic), part)
    return sorted(out.values(), key=lambda s: (s.device, s.sensor, s.quantity))


_START = operator.itemgetter(4)  # Window.start
_SENSOR = operator.itemgetter(2)
_QUANTITY = operator.itemgetter(3)


def _by_series(windows: list[Window]) -> list[tuple[tuple[str, str], list[Window]]]:
    """``windows`` (oldest first) split by series, each oldest first.

    When every series has every window (a chart's usual case), the windows of one start are one
    of each series in the same order, so each series is a slice with a stride: checked with map
    and set, no Python per window. Otherwise grouped window by window.
    """
    if not windows:
        return []
    first = windows[0].start
    k = next((i for i, w in enumerate(windows) if w.start != first), len(windows))
    parts = [windows[j::k] for j in range(k)]
    keys = {(p[0].sensor, p[0].quantity) for p in parts}
    if len(keys) == k and all(
        len(set(map(_SENSOR, p))) == 1 and len(set(map(_QUANTITY, p))) == 1 for p in parts
    ):
        return [((p[0].sensor, p[0].quantity), p) for p in parts]
    groups: dict[tuple[str, str], list[Window]] = {}
    for w in windows:
        groups.setdefault((w.sensor, w.quantity), []).append(w)
    return list(groups.items())


_Value = Callable[[Window], float]
_STATISTIC: dict[str, _Value] = {
    "mean": operator.attrgetter("mean"),
    "min": operator.attrgetter("min"),
    "max": operator.attrgetter("max"),
}


def _sum_of(w: Window) -> float:
    return round(w.mean * w.count, 9)


def _value_of(quantity: str, statistic: Statistic) -> _Value:
    """How :func:`window_value` reads the windows of ``quantity``, decided once per series."""
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
        for w in store.windows(org, device, a, b, 3600.0, quantity=quantity):
            key = (org, device, w.sensor)
            if per == "hour":
                bucket = w.start
            else:
                day = datetime.fromtimestamp(w.start, tz).replace(hour=0, minute=0, second=0, microsecond=0)
                bucket = day.timestamp()
            into = sums.setdefault(key, {})
            into[bucket] = into.get(bucket, 0.0) + w.mean * w.count
    out = []
    for (org, device, sensor), buckets in sorted(sums.items()):
        times = sorted(buckets)
        out.append(Series(org, device, sensor, name, times, [round(buckets[t], 9) for t in times]))
    return out
