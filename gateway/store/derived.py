"""Derived quantities applied on read: a :class:`Reader` that adds them to what another reads.

``DerivedReader(reader, rules)`` answers every read of the :class:`~gateway.store.base.Reader`
interface with the inner reader's readings *and* the derived quantities of ``rules``
(``kits.derived``: fill level, clamp current and power, dew point) for the devices they are keyed
to. Nothing is written: the readings in the store stay what the sensors sent. It works on any
backend, since it only reads through the interface (SQLite, InfluxQL).

Windows of a derived quantity are computed from the windows of its inputs: exact for the linear
ones (fill level, current, power: the mean's image is the image's mean); a dew point window is the
dew point of the window's mean temperature and humidity, its min and max those of the minima and
maxima (bounds). Counts per hour and per day are sums of windows, made where charts are drawn
(``server.charts.sums``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace

from gateway.store.base import (
    DeadLetter,
    DeviceKey,
    DeviceSeen,
    Reader,
    SeriesWindows,
    Window,
    series_of,
    windows_of,
)
from kits.derived import (
    Clamp,
    Counts,
    DewPoint,
    FillLevel,
    Rule,
    applies,
    clamp_current,
    clamp_power,
    dew_point,
    fill_level,
    inputs_of,
    outputs_of,
)
from kits.quantities import DERIVED_QUANTITIES
from kits.wire import Record

__all__ = ["DerivedReader", "derive_records", "derive_windows"]


def _ordered(rules: Sequence[Rule]) -> list[Rule]:
    # The rule naming a device and a sensor wins over one for every device or sensor.
    return sorted(rules, key=lambda r: (r.device is None, r.sensor is None))


def derive_records(records: Iterable[Record], rules: Sequence[Rule]) -> list[Record]:
    """Return the derived readings of ``records`` (any order) under ``rules``, one per reading.

    A reading without what its derivation needs (a temperature without a humidity at the same time
    and sensor, a humidity of 0) derives nothing.
    """
    rules = _ordered([r for r in rules if not isinstance(r, Counts)])
    if not rules:
        return []
    out: dict[tuple[str, str, str, float], Record] = {}
    climate: dict[tuple[str, str, str, float], dict[str, float]] = {}

    def put(record: Record, quantity: str, value: float) -> None:
        key = (record.device, record.sensor, quantity, record.time)
        if key not in out and math.isfinite(value):
            out[key] = replace(record, quantity=quantity, value=value)

    for record in records:
        for rule in rules:
            if not applies(rule, record.device, record.sensor):
                continue
            if isinstance(rule, FillLevel) and record.quantity == "distance":
                assert rule.depth_mm is not None
                put(record, "fill_level", fill_level(record.value, rule.depth_mm))
            elif isinstance(rule, Clamp) and record.quantity == f"voltage_{rule.channel}":
                assert rule.ratio_a_per_v is not None and rule.mains_v is not None
                amps = clamp_current(max(record.value, 0.0), rule.ratio_a_per_v)
                put(record, f"current_{rule.channel}", amps)
                put(record, f"power_{rule.channel}", clamp_power(amps, rule.mains_v, rule.power_factor))
            elif isinstance(rule, DewPoint) and record.quantity in ("temperature", "humidity"):
                key = (record.org, record.device, record.sensor, record.time)
                climate.setdefault(key, {})[record.quantity] = record.value
    for (org, device, sensor, time), values in climate.items():
        if "temperature" in values and "humidity" in values:
            value = dew_point(values["temperature"], values["humidity"])
            if value is not None:
                put(Record(org, device, sensor, "dew_point", value, time), "dew_point", value)
    return list(out.values())


def derive_windows(windows: Iterable[Window], rules: Sequence[Rule]) -> list[Window]:
    """Return the derived windows of ``windows`` (same width) under ``rules``."""
    rules = _ordered([r for r in rules if not isinstance(r, Counts)])
    if not rules:
        return []
    out: dict[tuple[str, str, str, float], Window] = {}
    climate: dict[tuple[str, str, str, float], dict[str, Window]] = {}

    def put(w: Window, quantity: str, mean: float, low: float, high: float, count: int | None = None) -> None:
        key = (w.device, w.sensor, quantity, w.start)
        if key not in out and all(map(math.isfinite, (mean, low, high))):
            out[key] = w._replace(quantity=quantity, mean=mean, min=low, max=high, count=count or w.count)

    for w in windows:
        for rule in rules:
            if not applies(rule, w.device, w.sensor):
                continue
            if isinstance(rule, FillLevel) and w.quantity == "distance":
                assert rule.depth_mm is not None
                depth = rule.depth_mm
                # Fill falls as distance rises: the fullest moment is the shortest distance.
                put(
                    w,
                    "fill_level",
                    fill_level(w.mean, depth),
                    fill_level(w.max, depth),
                    fill_level(w.min, depth),
                )
            elif isinstance(rule, Clamp) and w.quantity == f"voltage_{rule.channel}":
                assert rule.ratio_a_per_v is not None and rule.mains_v is not None
                ratio, mains, pf = rule.ratio_a_per_v, rule.mains_v, rule.power_factor
                mean, low, high = (clamp_current(max(v, 0.0), ratio) for v in (w.mean, w.min, w.max))
                put(w, f"current_{rule.channel}", mean, low, high)
                put(
                    w,
                    f"power_{rule.channel}",
                    clamp_power(mean, mains, pf),
                    clamp_power(low, mains, pf),
                    clamp_power(high, mains, pf),
                )
            elif isinstance(rule, DewPoint) and w.quantity in ("temperature", "humidity"):
                climate.setdefault((w.org, w.device, w.sensor, w.start), {})[w.quantity] = w
    for parts in climate.values():
        t, h = parts.get("temperature"), parts.get("humidity")
        if t is None or h is None:
            continue
        dew = dew_point(t.mean, h.mean)
        if dew is not None:
            dew_low, dew_high = dew_point(t.min, h.min), dew_point(t.max, h.max)
            put(
                t,
                "dew_point",
                dew,
                dew_low if dew_low is not None else dew,
                dew_high if dew_high is not None else dew,
                min(t.count, h.count),
            )
    return list(out.values())


def _record_order(r: Record) -> tuple[float, str, str]:
    return (r.time, r.sensor, r.quantity)


class DerivedReader:
    """A :class:`Reader` adding the derived quantities of ``rules`` to ``inner``'s reads.

    ``rules`` maps a device, by (org, device), to its derivations; other devices read as they are.
    Closing it does not close ``inner`` (it is a view of a shared reader).
    """

    def __init__(self, inner: Reader, rules: Mapping[DeviceKey, Sequence[Rule]]) -> None:
        self.inner = inner
        self.rules = {key: list(value) for key, value in rules.items() if value}

    def _inputs(self, key: DeviceKey, quantity: str) -> tuple[str, ...] | None:
        """The measured quantities a read of derived ``quantity`` needs, None if not derived here."""
        if quantity not in DERIVED_QUANTITIES:
            return None
        needed = {q for r in self.rules.get(key, ()) if quantity in outputs_of(r) for q in inputs_of(r)}
        return tuple(sorted(needed))

    def readings(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        limit: int = 100_000,
    ) -> list[Record]:
        """The inner readings plus derived ones, oldest first, at most ``limit`` (paged like the inner).

        Asked for a derived quantity, it reads its inputs page by page until ``limit`` derived
        readings are found or the range ends, so a missing input never ends a paged read early.
        """
        rules = self.rules.get((org, device))
        if not rules:
            if quantity in DERIVED_QUANTITIES:
                return []
            return self.inner.readings(org, device, start, end, sensor=sensor, quantity=quantity, limit=limit)
        needed = self._inputs((org, device), quantity) if quantity is not None else None
        if quantity is not None and needed is None:
            return self.inner.readings(org, device, start, end, sensor=sensor, quantity=quantity, limit=limit)
        if needed == ():
            return []
        out: dict[tuple[float, str, str], Record] = {}
        cursor = start
        while True:
            raw = self.inner.readings(
                org,
                device,
                cursor,
                end,
                sensor=sensor,
                quantity=needed[0] if needed is not None and len(needed) == 1 else None,
                limit=limit,
            )
            derived = derive_records(raw, rules)
            for r in derived if needed is not None else [*raw, *derived]:
                if quantity is None or r.quantity == quantity:
                    out.setdefault(_record_order(r), r)
            if len(raw) < limit or len(out) >= limit or raw[-1].time == cursor:
                break
            cursor = raw[-1].time
        return sorted(out.values(), key=_record_order)[:limit]

    def latest(
        self, devices: Collection[DeviceKey] | None = None, *, since: float | None = None
    ) -> list[Record]:
        """The inner newest readings plus those derived from them (a dew point needs the newest
        temperature and humidity of one sensor to be of the same time)."""
        raw = self.inner.latest(devices, since=since)
        by_device: dict[DeviceKey, list[Record]] = {}
        for r in raw:
            by_device.setdefault((r.org, r.device), []).append(r)
        out = list(raw)
        for key, records in by_device.items():
            out.extend(derive_records(records, self.rules.get(key, ())))
        return sorted(out, key=lambda r: (r.org, r.device, r.sensor, r.quantity))

    def devices(
        self, org: str | None = None, *, keys: Collection[DeviceKey] | None = None
    ) -> list[DeviceSeen]:
        return self.inner.devices(org, keys=keys)

    def windows(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
    ) -> list[Window]:
        """:meth:`series_windows` one window at a time, ordered by start, sensor and quantity."""
        return windows_of(
            self.series_windows(org, device, start, end, every, sensor=sensor, quantity=quantity)
        )

    def series_windows(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        means_only: bool = False,
    ) -> list[SeriesWindows]:
        """The inner series plus the derived quantities' series, of the same width, as columns.

        The measured series pass as the inner reader read them; only the inputs of a derivation
        (a bin's distance, a clamp's voltage) are taken window by window to derive from. Those are
        read whole even for ``means_only`` (a bin's lowest fill level is its longest distance).
        """
        rules = self.rules.get((org, device))
        if not rules:
            if quantity in DERIVED_QUANTITIES:
                return []
            return self.inner.series_windows(
                org, device, start, end, every, sensor=sensor, quantity=quantity, means_only=means_only
            )
        needed = self._inputs((org, device), quantity) if quantity is not None else None
        if quantity is not None and needed is None:
            return self.inner.series_windows(
                org, device, start, end, every, sensor=sensor, quantity=quantity, means_only=means_only
            )
        if needed == ():
            return []
        one = needed[0] if needed is not None and len(needed) == 1 else None
        raw = self.inner.series_windows(org, device, start, end, every, sensor=sensor, quantity=one)
        inputs = {q for rule in rules for q in inputs_of(rule)}
        derived = series_of(derive_windows(windows_of(s for s in raw if s.quantity in inputs), rules))
        found = derived if needed is not None else [*raw, *derived]
        if quantity is not None:
            found = [s for s in found if s.quantity == quantity]
        if means_only:
            found = [replace(s, mins=[], maxes=[]) for s in found]
        return sorted(found, key=lambda s: (s.sensor, s.quantity))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.inner.dead_letters(limit)

    def count_dead_letters(self) -> int:
        return self.inner.count_dead_letters()

    def health(self) -> None:
        self.inner.health()

    def close(self) -> None:
        """Nothing to close: the inner reader is shared and closed by its owner."""
