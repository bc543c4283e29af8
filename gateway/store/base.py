"""What every time-series store exchanges: dead letters, device summaries and the store error."""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from kits.errors import SuitcaseError
from kits.wire import Record

__all__ = [
    "FINE_WIDTHS",
    "ROLLUP_WIDTHS",
    "DeadLetter",
    "DeviceKey",
    "DeviceSeen",
    "Reader",
    "SeriesWindows",
    "Store",
    "StoreError",
    "Window",
    "check_keys",
    "check_window_width",
    "series_of",
    "windows_of",
]


ROLLUP_WIDTHS = (60, 300, 900, 3600, 10800, 43200, 86400)
"""Widths (s) of the windows a store may keep downsampled (rollups): 1, 5 and 15 min, 1, 3 and 12 h,
and 1 day.

Each is a multiple of the one before, so a window of a multiple of one is read from the coarsest
such rollup. Both the embedded store and InfluxDB 1.x (one retention policy per width) keep them
all; an InfluxDB database set up before the others existed keeps 1 min and 1 h until
``retention apply`` upgrades it. Charts pick window widths that are multiples of them
(``server.charts.bucket_width``), so a chart reads a few rows per point whatever its range.
"""


FINE_WIDTHS = (5, 30)
"""Widths (s) under a minute that the embedded store keeps rollups of too: 5 and 30 s.

Each divides the next (and 30 divides 60), so charts under about 8 hours (1 h: 5-second windows,
6 h: 30-second ones) read one rollup row per window, not every reading; a chart picks its width
from these and :data:`ROLLUP_WIDTHS` alike (``server.charts.bucket_width``). The embedded store
keeps them for the last two days (older windows of these widths read the readings); InfluxDB keeps
no tier under a minute: it groups the readings, whatever the width.
"""


class StoreError(SuitcaseError):
    """The store could not be opened, read or written; the message says which and what to do."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that broke the wire contract, kept with its reason (never dropped silently).

    ``code`` is the stable slug of the error class (``kits.errors.WireError.code``).
    """

    received_at: float
    topic: str
    payload: bytes
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    """A device that has readings in the store, registered or not.

    ``first_seen`` and ``last_seen`` are the times (UTC epoch seconds) of its oldest and newest
    readings; ``readings`` counts distinct readings (a redelivered reading counts once).
    """

    org: str
    device: str
    first_seen: float
    last_seen: float
    readings: int


class Window(NamedTuple):
    """One downsampled window of one series: readings with ``start <= time < start + every``.

    A named tuple, not a frozen dataclass: a chart makes thousands, and a tuple is made about five
    times faster (it was a third of a year-long chart's time on SQLite).
    """

    org: str
    device: str
    sensor: str
    quantity: str
    start: float
    count: int  # type: ignore[assignment]  # hides tuple.count(), which no one calls on a window
    mean: float
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class SeriesWindows:
    """One series' downsampled windows as columns: equal-length lists, oldest first.

    The columnar form of :class:`Window` (``starts[i]``, ``counts[i]``, ... are one window): a chart
    of 10 series of 720 windows is 10 of these, not 7,200 objects, and its lists go to the
    response as they are. Only windows with readings are in it (every count is positive).
    ``mins`` and ``maxes`` are empty when read with ``means_only`` (:meth:`Reader.series_windows`).
    """

    org: str
    device: str
    sensor: str
    quantity: str
    starts: list[float]
    counts: list[int]
    means: list[float]
    mins: list[float]
    maxes: list[float]


def windows_of(series: Iterable[SeriesWindows]) -> list[Window]:
    """The windows of ``series`` (each oldest first, in (sensor, quantity) order) one by one, in
    :meth:`Reader.windows`' order: start, sensor, quantity."""
    new = tuple.__new__
    out: list[Window] = []
    for s in series:
        head = (s.org, s.device, s.sensor, s.quantity)
        out += [
            new(Window, (*head, *row))
            for row in zip(s.starts, s.counts, s.means, s.mins, s.maxes, strict=True)
        ]
    out.sort(key=_WINDOW_START)  # stable: the series' order is kept within a start
    return out


def series_of(windows: Sequence[Window]) -> list[SeriesWindows]:
    """``windows`` (one device's, in :meth:`Reader.windows`' order) as columns per series, in
    (sensor, quantity) order."""
    out = []
    for part in _by_series(windows):
        org, device, sensor, quantity, starts, counts, means, mins, maxes = zip(*part, strict=True)
        out.append(
            SeriesWindows(
                org[0],
                device[0],
                sensor[0],
                quantity[0],
                list(starts),
                list(counts),
                list(means),
                list(mins),
                list(maxes),
            )
        )
    out.sort(key=lambda s: (s.sensor, s.quantity))
    return out


def _by_series(windows: Sequence[Window]) -> list[Sequence[Window]]:
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
    if len({(p[0].sensor, p[0].quantity) for p in parts}) == k and all(
        len(set(map(_SENSOR, p))) == 1 and len(set(map(_QUANTITY, p))) == 1 for p in parts
    ):
        return parts
    groups: dict[tuple[str, str], list[Window]] = {}
    for w in windows:
        groups.setdefault((w.sensor, w.quantity), []).append(w)
    return list(groups.values())


_SENSOR = operator.itemgetter(2)
_QUANTITY = operator.itemgetter(3)
_WINDOW_START = operator.itemgetter(4)


DeviceKey = tuple[str, str]
"""A device as every read names it: (org slug, device id). Device ids are never read alone."""


class Reader(Protocol):
    """The read side of the time-series store: the only thing the server depends on.

    Every backend answers it (SQL on the embedded SQLite store, InfluxQL on ``/query`` for
    InfluxDB 1.x, 2.x and 3.x). Every read names its device by (org, device). A read that cannot
    reach the store raises :class:`StoreError` (never an empty answer that pretends there is no
    data).
    """

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
        """Return up to ``limit`` readings of (``org``, ``device``) with ``start <= time < end``.

        Oldest first, ties ordered by sensor and quantity. A page ends at the time of its last
        reading: the next page starts there (``start = last.time``) and skips what it already has
        (``server.export.iter_readings`` does this).
        """
        ...

    def latest(
        self, devices: Collection[DeviceKey] | None = None, *, since: float | None = None
    ) -> list[Record]:
        """Return the newest reading of each (device, sensor, quantity) of ``devices`` (None: all),
        in one call, ordered by device, sensor and quantity.

        ``since`` leaves out the series whose newest reading is older than it: a read bounded to
        a window (an alert rule's) that on InfluxDB reads only that window's shards and points.
        """
        ...

    def devices(
        self, org: str | None = None, *, keys: Collection[DeviceKey] | None = None
    ) -> list[DeviceSeen]:
        """Return every device with readings (of ``org``, or of every org), ordered by org and device.

        ``keys`` narrows it to those (org, device) pairs: a page of 50 among 10,000 devices is one
        small read, not a read of all.
        """
        ...

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
        """Return (``org``, ``device``)'s readings as windows of ``every`` seconds (epoch-aligned).

        One :class:`Window` (count, mean, min, max) per series and window that has readings,
        ordered by start, sensor and quantity; any range from an hour to a year. The same windows
        as :meth:`series_windows`, one object each: for reads of a few windows (alerts, reports,
        counts); a chart reads the columns.
        """
        ...

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
        """Return :meth:`windows`' windows as columns, one :class:`SeriesWindows` per series that
        has readings, in (sensor, quantity) order, each oldest first.

        What charts read: no Python object per window (a 30-day chart of 10 series has 7,200).
        ``means_only``: the caller draws means (or sums: mean x count) only, so the ``mins`` and
        ``maxes`` of every series are empty lists; a store then computes half the aggregates
        (InfluxDB groups a short chart's raw readings with count and sum only).
        """
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters, newest first."""
        ...

    def count_dead_letters(self) -> int:
        """Return how many dead letters the store holds."""
        ...

    def health(self) -> None:
        """Check cheaply that the store answers (never a count of every reading).

        Raises:
            StoreError: the store is unreachable, refuses the credentials or has no such database;
                the message names the setting and the fix.
        """
        ...

    def close(self) -> None: ...


class Store(Reader, Protocol):
    """The read side plus the writes the gateway makes (the SQLite store is the reference)."""

    def write(self, records: Sequence[Record]) -> None: ...
    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...
    def count_readings(self) -> int: ...


def check_window_width(every: float) -> None:
    """Raise StoreError unless ``every`` (a window width in seconds, for ``windows()``) is positive."""
    if not every > 0:
        raise StoreError(f"window width {every} s is not positive: use e.g. 60, 3600 or 86400")


def check_keys(devices: Collection[DeviceKey]) -> Collection[DeviceKey]:
    """Return ``devices`` if it is a collection of (org, device) pairs; raise TypeError otherwise.

    A bare device id (a ``str``, itself a collection) is refused: reads are keyed by org too.
    """
    if isinstance(devices, str) or any(not isinstance(k, tuple) or len(k) != 2 for k in devices):
        raise TypeError(f"devices must be (org, device) pairs, not {devices!r}")
    return devices
