"""The embedded time-series store: one SQLite file (WAL, ``synchronous=FULL``).

Schema (``PRAGMA user_version`` 3):

- ``series``: one row per (org, device, sensor, quantity), with the newest reading of that
  series (``last_time``, ``last_value``) so :meth:`SqliteStore.latest` reads one row per series.
- ``readings``: ``(series_id, time, value)``, ``PRIMARY KEY (series_id, time) WITHOUT ROWID``:
  a range query by device and time is one index range scan per series of the device, and a
  redelivered reading lands on its own key (overwrite, never a duplicate).
- ``devices``: per (org, device) the oldest and newest reading time and the count of distinct
  readings, maintained on write so :meth:`SqliteStore.devices` and
  :meth:`SqliteStore.count_readings` never scan the readings.
- ``dead_letters``: messages that broke the wire contract, with their code and reason.
- ``rollups``: per series, windows of each of :data:`ROLLUP_WIDTHS` (``width`` 60, 300, 900,
  3600, 10800, 43200 and 86400 s) with count, sum, min and max, so a year-long chart reads ~730
  twelve-hour rows per series, not millions of readings. A write marks the minutes it touched in
  ``rollup_dirty``; :meth:`SqliteStore.refresh_rollups` recomputes exactly those minutes from the
  readings (so a redelivery never counts twice) and each coarser window from the one below. The
  ``sqlite`` sink refreshes every few seconds, and :meth:`SqliteStore.windows` refreshes before it
  reads.
  Version 1 kept only the minute and hour windows: opening such a file computes the others from
  them once (``_upgrade_from_1``).
  The same table holds the windows of :data:`FINE_WIDTHS` (5 and 30 s), so a chart under about 8
  hours reads one row per window instead of every reading: a refresh recomputes the 5-second
  windows of each marked minute from its readings and the 30-second ones from those (only the
  windows that changed are written). They are kept two days (charts under a day end now) and never
  longer than the readings.
- ``fine_rollups``: one row, from when the 5- and 30-second windows are complete: windows of those
  widths before it are read from the readings, as in version 2. A file of version 2 had none:
  opening it computes those of its newest day of readings (``_upgrade_from_2``) and records that
  day's start; :meth:`SqliteStore.apply_retention` moves it to two days ago. A new file has no row
  until then: its fine windows are complete.
- ``rollup_refresh``: one row, when a writer last refreshed the rollups on its period
  (:meth:`SqliteStore.refresh_rollups_if_due`). The marked minutes are shared by every writer of
  the file (gateways under ``--workers``), so one refresh per period serves them all; the others
  skip theirs instead of recomputing the same minutes and their coarser windows again. Added
  without a version change: each open creates it if missing, and older code ignores it.
- ``retention``: per org, how many days of readings, minute and hour rollups to keep
  (:meth:`SqliteStore.set_retention`; :meth:`SqliteStore.apply_retention` deletes the rest).
  The 5- and 30-second windows are kept as long as the readings (and two days at most), the 5-
  and 15-minute ones as long as the minute ones, the 3-hour, 12-hour and day ones as long as the
  hour ones. An org without a row keeps everything.

Times are stored as SQLite REAL, i.e. the very IEEE-754 double of ``Record.time`` (UTC epoch
seconds): what :meth:`SqliteStore.readings` returns is bit-for-bit what was written, and the
idempotency key is that exact time.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path

from gateway.store.base import (
    FINE_WIDTHS,
    ROLLUP_WIDTHS,
    DeadLetter,
    DeviceKey,
    DeviceSeen,
    SeriesWindows,
    StoreError,
    Window,
    check_keys,
    check_window_width,
)
from kits.wire import Record

__all__ = [
    "FINE_WIDTHS",
    "ROLLUP_WIDTHS",
    "SCHEMA_VERSION",
    "SeriesColumns",
    "SqliteStore",
    "from_url",
    "series_columns",
]

SCHEMA_VERSION = 3
_BUSY_TIMEOUT_MS = 30_000
_WAL_CHECKPOINT_PAGES = 10_000
_CACHE_KIB = 32 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    org TEXT NOT NULL,
    device TEXT NOT NULL,
    sensor TEXT NOT NULL,
    quantity TEXT NOT NULL,
    last_time REAL,
    last_value REAL,
    UNIQUE (org, device, sensor, quantity)
);
CREATE INDEX IF NOT EXISTS series_by_device ON series (device, sensor, quantity);
CREATE TABLE IF NOT EXISTS readings (
    series_id INTEGER NOT NULL REFERENCES series (id),
    time REAL NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series_id, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    org TEXT NOT NULL,
    device TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    readings INTEGER NOT NULL,
    PRIMARY KEY (org, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (received_at);
CREATE TABLE IF NOT EXISTS rollup_dirty (
    series_id INTEGER NOT NULL,
    minute REAL NOT NULL,
    PRIMARY KEY (series_id, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    series_id INTEGER NOT NULL,
    width INTEGER NOT NULL,
    start REAL NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    PRIMARY KEY (series_id, width, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fine_rollups (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    complete_from REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_refresh (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    refreshed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS retention (
    org TEXT PRIMARY KEY,
    raw_days REAL,
    minute_days REAL,
    hour_days REAL
) WITHOUT ROWID;
"""

# Readings go in INSERTs of this many rows each: one statement step per chunk instead of per row
# costs about a third less CPU than executemany of single rows (measured: benchmarks/, gateway).
_INSERT_CHUNK = 100
_KEYS_PER_QUERY = 400
_INSERT_ONE = "INSERT OR IGNORE INTO readings (series_id, time, value) VALUES (?, ?, ?)"
_INSERT_MANY = _INSERT_ONE.replace("(?, ?, ?)", ", ".join(["(?, ?, ?)"] * _INSERT_CHUNK))


def _insert_readings(conn: sqlite3.Connection, rows: list[tuple[int, float, float]]) -> None:
    """INSERT OR IGNORE ``rows`` of (series id, time, value), in order, binding each double as is."""
    whole = len(rows) - len(rows) % _INSERT_CHUNK
    if whole:
        flat = list(itertools.chain.from_iterable(rows[:whole]))
        width = 3 * _INSERT_CHUNK
        conn.executemany(_INSERT_MANY, [flat[i : i + width] for i in range(0, len(flat), width)])
    if whole < len(rows):
        conn.executemany(_INSERT_ONE, rows[whole:])


_REFRESH_MINUTES = """
INSERT OR REPLACE INTO rollups (series_id, width, start, count, sum, min, max)
SELECT d.series_id, 60, d.minute, count(r.value), coalesce(sum(r.value), 0),
       coalesce(min(r.value), 0), coalesce(max(r.value), 0)
FROM rollup_dirty AS d
LEFT JOIN readings AS r ON r.series_id = d.series_id AND r.time >= d.minute AND r.time < d.minute + 60
GROUP BY d.series_id, d.minute
"""
_VERSION_1_WIDTHS = (60, 3600)  # the rollups of schema version 1

# The 5-second windows of each marked minute from its readings, then the 30-second ones from
# those. Buckets by CAST(time / width): for positive times and these widths the quotient never
# rounds up to the next whole number (it is at least a fifth of an ulp of the time below it), so
# a reading lands where ``start <= time < start + width`` puts it, as the window reads compare.
# CROSS JOIN: the marked minutes lead (SQLite would otherwise scan every 5-second rollup).
_FINE, _FINE_2 = FINE_WIDTHS
# From when the fine rollups are complete (no row: from the first reading). Minutes before it
# get none: windows there read the readings.
_COMPLETE_FROM = "(SELECT coalesce(max(complete_from), -1e300) FROM fine_rollups)"
# A marked minute is recomputed whole, but as readings arrive only its newest windows change:
# the others are left as they are, not rewritten (a minute at 1 Hz refreshed every 5 s has 12).
_UNLESS_SAME = """ON CONFLICT (series_id, width, start) DO UPDATE SET count = excluded.count,
    sum = excluded.sum, min = excluded.min, max = excluded.max
WHERE count <> excluded.count OR sum <> excluded.sum OR min <> excluded.min OR max <> excluded.max"""
_REFRESH_FINE = [
    f"""
INSERT INTO rollups (series_id, width, start, count, sum, min, max)
SELECT d.series_id, {_FINE}, CAST(r.time / {_FINE} AS INTEGER) * {_FINE}.0 AS b, count(*), sum(r.value),
       min(r.value), max(r.value)
FROM rollup_dirty AS d
CROSS JOIN readings AS r ON r.series_id = d.series_id AND r.time >= d.minute AND r.time < d.minute + 60
WHERE d.minute >= {_COMPLETE_FROM}
GROUP BY d.series_id, b
{_UNLESS_SAME}""",
    f"""
INSERT INTO rollups (series_id, width, start, count, sum, min, max)
SELECT d.series_id, {_FINE_2}, CAST(f.start / {_FINE_2} AS INTEGER) * {_FINE_2}.0 AS b, sum(f.count),
       sum(f.sum), min(f.min), max(f.max)
FROM rollup_dirty AS d
CROSS JOIN rollups AS f ON f.series_id = d.series_id AND f.width = {_FINE} AND f.start >= d.minute
     AND f.start < d.minute + 60
WHERE d.minute >= {_COMPLETE_FROM}
GROUP BY d.series_id, b
{_UNLESS_SAME}""",
]
# A version-2 file gets the fine windows of its newest day of readings when opened (a few
# seconds for a day at 1 Hz of 10 series); older windows of those widths read the readings.
_FINE_BACKFILL_S = 86_400.0
# Fine windows are kept for the last two days (charts under a day end now): at one reading a
# minute each reading has a 5- and a 30-second window of its own, which kept as long as the
# readings would more than double the file. Older windows of those widths read the readings.
_FINE_KEEP_S = 2 * 86_400.0

# What SqliteStore.windows aggregates per window: readings, rollup rows of a finer width, or (one
# rollup row per window) the row as it is.
_RAW_AGGREGATES = "count(*), avg(r.value), min(r.value), max(r.value)"
_ROLLUP_AGGREGATES = "sum(r.count), sum(r.sum) / sum(r.count), min(r.min), max(r.max)"
_PLAIN = "r.count, r.sum / r.count, r.min, r.max"
# Rows of a connection's temp.window_index (0, 1, 2, ...): the windows one read may seek one by
# one. 100,000 integers are ~1 MB of temp pages; a read of more windows groups with a sort.
_WINDOW_INDEX_MAX = 100_000
_WINDOW_START = operator.itemgetter(4)  # Window.start

# Each coarser window of a marked minute, from the windows one tier below (whole, since each
# width is a multiple of the one before).
_REFRESH_COARSER = [
    f"""
INSERT OR REPLACE INTO rollups (series_id, width, start, count, sum, min, max)
SELECT u.series_id, {width}, u.start, sum(m.count), sum(m.sum), min(m.min), max(m.max)
FROM (SELECT DISTINCT series_id, CAST(minute / {width} AS INTEGER) * {width}.0 AS start
      FROM rollup_dirty) AS u
JOIN rollups AS m ON m.series_id = u.series_id AND m.width = {below}
     AND m.start >= u.start AND m.start < u.start + {width} AND m.count > 0
GROUP BY u.series_id, u.start
"""
    for below, width in itertools.pairwise(ROLLUP_WIDTHS)
]


def _upgrade_from_1(conn: sqlite3.Connection) -> None:
    """Compute the rollups that a version-1 file lacks (all but the minute and hour ones), each
    from the one below, in the caller's transaction."""
    for below, width in itertools.pairwise(ROLLUP_WIDTHS):
        if width in _VERSION_1_WIDTHS:
            continue
        conn.execute(
            "INSERT OR REPLACE INTO rollups (series_id, width, start, count, sum, min, max) "
            f"SELECT series_id, {width}, CAST(start / {width} AS INTEGER) * {width}.0 AS w, "
            "sum(count), sum(sum), min(min), max(max) "
            f"FROM rollups WHERE width = {below} AND count > 0 GROUP BY series_id, w"
        )


def _upgrade_from_2(conn: sqlite3.Connection) -> None:
    """Compute the 5- and 30-second rollups of the newest day of readings of a version-2 file and
    record from when they are complete, in the caller's transaction."""
    newest = conn.execute(
        "SELECT max((SELECT max(time) FROM readings WHERE series_id = s.id)) FROM series AS s"
    ).fetchone()[0]
    if newest is None:
        return  # no readings: complete from the first
    since = float(math.floor((newest - _FINE_BACKFILL_S) / 60) * 60)
    conn.execute(
        "INSERT OR REPLACE INTO rollups (series_id, width, start, count, sum, min, max) "
        f"SELECT r.series_id, {_FINE}, CAST(r.time / {_FINE} AS INTEGER) * {_FINE}.0 AS b, count(*), "
        "sum(r.value), min(r.value), max(r.value) "
        "FROM series AS s CROSS JOIN readings AS r ON r.series_id = s.id AND r.time >= ? "
        "GROUP BY r.series_id, b",
        (since,),
    )
    conn.execute(
        "INSERT OR REPLACE INTO rollups (series_id, width, start, count, sum, min, max) "
        f"SELECT f.series_id, {_FINE_2}, CAST(f.start / {_FINE_2} AS INTEGER) * {_FINE_2}.0 AS b, "
        "sum(f.count), sum(f.sum), min(f.min), max(f.max) "
        f"FROM series AS s CROSS JOIN rollups AS f ON f.series_id = s.id AND f.width = {_FINE} "
        "AND f.start >= ? GROUP BY f.series_id, b",
        (since,),
    )
    conn.execute("INSERT OR REPLACE INTO fine_rollups (id, complete_from) VALUES (1, ?)", (since,))


def _fine_width(every: float) -> int | None:
    """The coarsest of :data:`FINE_WIDTHS` that divides ``every``, unless a minute divides it (or
    neither does: None)."""
    if every % 60 == 0:
        return None
    return next((w for w in reversed(FINE_WIDTHS) if every % w == 0), None)


def _fine_parts(start: float, end: float, width: int, since: float) -> list[tuple[int | None, float, float]]:
    """The reads of windows over ``[start, end)`` whose width is a multiple of fine rollup ``width``:
    (rollup width or None for the readings, from, to), oldest first.

    The whole ``width`` windows from ``since`` (when the file's fine rollups are complete) read the
    rollup; the rest, at most a rollup window at each end or the range before ``since``, the
    readings: so a window holds exactly its readings within the range, as from the readings alone.
    """
    a = max(float(math.ceil(start / width) * width), since)
    b = float(math.floor(end / width) * width)
    if a >= b:
        return [(None, start, end)]
    parts: list[tuple[int | None, float, float]] = [(None, start, a)] if start < a else []
    parts.append((width, a, b))
    if b < end:
        parts.append((None, b, end))
    return parts


_Row = tuple[float, int, float, float, float]  # one series' window: start, count, mean, min, max


def _join_rows(parts: list[list[_Row]]) -> list[_Row]:
    """Concatenate one series' rows of consecutive reads (each oldest first), adding up the window
    two neighbouring reads may share (the one their boundary falls in)."""
    out: list[_Row] = []
    for rows in parts:
        if out and rows and out[-1][0] == rows[0][0]:
            (w, c1, mean1, low1, high1), (_, c2, mean2, low2, high2) = out[-1], rows[0]
            count = c1 + c2
            out[-1] = (w, count, (mean1 * c1 + mean2 * c2) / count, min(low1, low2), max(high1, high2))
            out += itertools.islice(rows, 1, None)
        else:
            out += rows
    return out


def _rollup_parts(start: float, end: float, every: float) -> list[tuple[int, float, float]] | None:
    """The rollups that windows of ``every`` s in ``[start, end)`` read: (width, from, to) of the
    rollups' starts, oldest first; None for the readings (``every`` is no whole number of minutes).

    A window widens to the whole minute (or hour, for whole hours) its range starts and ends in,
    as in schema version 1; between those edges the coarsest rollup that divides ``every`` is
    read, so a coarser rollup never adds readings from beyond the edges.
    """
    edge = next((w for w in reversed(_VERSION_1_WIDTHS) if every >= w and every % w == 0), None)
    if edge is None:
        return None
    coarse = next(w for w in reversed(ROLLUP_WIDTHS) if every % w == 0)
    lo, hi = start - start % edge, float(math.ceil(end / edge) * edge)
    a, b = float(math.ceil(lo / coarse) * coarse), float(math.floor(hi / coarse) * coarse)
    if coarse == edge or a >= b:
        return [(edge, lo, hi)]
    parts = [(edge, lo, a)] if lo < a else []
    parts.append((coarse, a, b))
    if b < hi:
        parts.append((edge, b, hi))
    return parts


_SeriesKey = tuple[str, str, str, str]
_series_key: Callable[[Record], _SeriesKey] = operator.attrgetter("org", "device", "sensor", "quantity")


SeriesColumns = dict[_SeriesKey, tuple[Sequence[float], Sequence[float]]]
"""Readings grouped per series: (org, device, sensor, quantity) -> (times, values), in order."""


def series_columns(records: Iterable[Record]) -> SeriesColumns:
    """Group ``records`` per series into (times, values) columns, keeping their order."""
    columns: dict[_SeriesKey, tuple[list[float], list[float]]] = {}
    for rec in records:
        key = _series_key(rec)
        column = columns.get(key)
        if column is None:
            columns[key] = ([rec.time], [rec.value])
        else:
            column[0].append(rec.time)
            column[1].append(rec.value)
    return dict(columns)


def _check_finite(series: SeriesColumns) -> None:
    """Raise StoreError for a value or time that is not a finite number.

    INSERT OR IGNORE would also ignore the NOT NULL that NaN becomes: refuse it here. A finite
    sum proves every term finite; otherwise each reading is looked at.
    """
    for (_org, device, sensor, quantity), (times, values) in series.items():
        try:
            if len(times) == len(values) and math.isfinite(sum(values)) and math.isfinite(sum(times)):
                continue
        except (TypeError, ValueError, OverflowError):
            pass
        if len(times) != len(values):
            raise StoreError(
                f"series {device} {sensor}/{quantity} has {len(times)} times but {len(values)} values"
            )
        for t, value in zip(times, values, strict=True):
            try:
                finite = math.isfinite(value) and math.isfinite(t)
            except TypeError:
                finite = False
            if not finite:
                raise StoreError(
                    f"reading {device} {sensor}/{quantity} at {t} has value "
                    f"{value}: only finite numbers are stored (decode payloads with kits.wire)"
                )


class SqliteStore:
    """A time-series store in one SQLite file, safe to use from several threads.

    Each thread gets its own connection; writes are serialised by a lock (SQLite has one writer
    anyway) and readers never block the writer (WAL).

    Args:
        path: the database file; created with its schema if missing.

    Raises:
        StoreError: the file cannot be opened or is not a store of this version.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # serialises writes; guards _series
        self._conn_lock = threading.Lock()  # guards _connections and _closed
        self._series: dict[_SeriesKey, int] = {}
        self._closed = False
        with self._translate("open"):
            conn = self._conn()
            self._enable_wal(conn)
            with self._transaction(conn):
                # Read inside the write transaction: of several processes opening a version-1
                # file at once, one upgrades it and the others find it upgraded.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, 1, 2, SCHEMA_VERSION):
                    raise StoreError(
                        f"store {self.path} has schema version {version}, this gateway knows "
                        f"{SCHEMA_VERSION}: upgrade IoT Suitcase or point it at another file"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if version == 1:
                    _upgrade_from_1(conn)
                if version in (1, 2):
                    _upgrade_from_2(conn)
                if version != SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ plumbing

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Several gateway processes (--workers) may create the file at once; switching it to WAL
        # then fails with "database is locked" without waiting on busy_timeout: retry until then.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"store {self.path} is closed: open it again with open_store()")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            # Each batch rewrites the newest page of every series it touches: a longer WAL folds
            # many versions of a page into one checkpoint write, and the cache keeps those pages.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(
                f"store {self.path}: could not {action} ({exc}): check the disk (space, permissions) "
                "and that no other program holds the file"
            ) from exc

    @staticmethod
    @contextlib.contextmanager
    def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
        """A read transaction: every read in it sees the file as of its first."""
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")  # nothing written: nothing to keep or undo

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _series_id(self, conn: sqlite3.Connection, key: _SeriesKey) -> int:
        sid = self._series.get(key)
        if sid is None:
            conn.execute(
                "INSERT OR IGNORE INTO series (org, device, sensor, quantity) VALUES (?, ?, ?, ?)", key
            )
            row = conn.execute(
                "SELECT id FROM series WHERE org = ? AND device = ? AND sensor = ? AND quantity = ?", key
            ).fetchone()
            sid = int(row[0])
        return sid

    # ------------------------------------------------------------------ writes

    def write(self, records: Sequence[Record]) -> None:
        """Write ``records``; durable on return.

        A record whose (org, device, sensor, quantity, time) is already stored overwrites its
        value: writing the same records twice stores them once. Within ``records``, the last
        record of a key wins.

        Raises:
            StoreError: a value or time is not finite, or the write failed; either way nothing
                of ``records`` was written (the transaction rolled back).
        """
        if records:
            self.write_series(series_columns(records))

    def write_series(self, series: SeriesColumns) -> None:
        """Write readings grouped per series (see :func:`series_columns`); durable on return.

        The same rules as :meth:`write`: the last reading of a key wins, and a bad number or a
        failed write writes nothing.
        """
        if not series:
            return
        _check_finite(series)
        count = sum(len(times) for times, _ in series.values())
        with self._translate(f"write {count} readings"), self._lock:
            conn = self._conn()
            new_ids: dict[_SeriesKey, int] = {}
            with self._transaction(conn):
                # One statement per kind of row for the whole batch, and the readings one per
                # device, so each device's count of new readings is exact; per-row work stays in C.
                device_rows: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
                device_span: dict[tuple[str, str], tuple[float, float]] = {}
                newest_rows: list[tuple[int, float, float]] = []
                dirty_rows: list[tuple[int, float]] = []
                for key, (times, values) in series.items():
                    if not times:
                        continue
                    sid = self._series_id(conn, key)
                    new_ids[key] = sid
                    rows = device_rows.setdefault((key[0], key[1]), [])
                    rows.extend(zip(itertools.repeat(sid), times, values, strict=False))
                    hi, lo = max(times), min(times)
                    last = len(times) - 1 - times[::-1].index(hi)  # the last of equal times wins
                    newest_rows.append((sid, hi, values[last]))
                    dirty_rows.extend((sid, m) for m in {t - t % 60 for t in times})
                    span = device_span.get((key[0], key[1]))
                    device_span[key[0], key[1]] = (
                        (lo, hi) if span is None else (min(span[0], lo), max(span[1], hi))
                    )
                per_device: list[tuple[str, str, float, float, int]] = []
                for (org, device), rows in device_rows.items():
                    before = conn.total_changes
                    _insert_readings(conn, rows)
                    added = conn.total_changes - before
                    if added != len(rows):  # some keys existed (or repeat in this batch): overwrite
                        conn.executemany(
                            "UPDATE readings SET value = ?3 WHERE series_id = ?1 AND time = ?2 "
                            "AND value IS NOT ?3",
                            rows,
                        )
                    lo, hi = device_span[org, device]
                    per_device.append((org, device, lo, hi, added))
                conn.executemany(
                    "UPDATE series SET last_time = ?2, last_value = ?3 "
                    "WHERE id = ?1 AND (last_time IS NULL OR last_time <= ?2)",
                    newest_rows,
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO rollup_dirty (series_id, minute) VALUES (?, ?)", dirty_rows
                )
                conn.executemany(
                    "INSERT INTO devices (org, device, first_seen, last_seen, readings) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (org, device) DO UPDATE SET "
                    "first_seen = min(first_seen, excluded.first_seen), "
                    "last_seen = max(last_seen, excluded.last_seen), "
                    "readings = readings + excluded.readings",
                    per_device,
                )
            self._series.update(new_ids)  # only after COMMIT: a rolled-back id must not be cached

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Append ``letters``; durable on return.

        Raises:
            StoreError: nothing of ``letters`` was written.
        """
        if not letters:
            return
        with self._translate(f"write {len(letters)} dead letters"), self._lock:
            conn = self._conn()
            with self._transaction(conn):
                conn.executemany(
                    "INSERT INTO dead_letters (received_at, topic, payload, code, reason) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(d.received_at, d.topic, bytes(d.payload), d.code, d.reason) for d in letters],
                )

    def prune_dead_letters(self, before: float) -> int:
        """Drop the dead letters received before ``before`` (their retention, gateway/dead_letters.py).

        Returns:
            How many were dropped.
        """
        with self._translate("drop old dead letters"), self._lock:
            conn = self._conn()
            with self._transaction(conn):
                return conn.execute("DELETE FROM dead_letters WHERE received_at < ?", (before,)).rowcount

    # ------------------------------------------------------------------ reads

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
        """Return (``org``, ``device``)'s readings with ``start <= time < end``, oldest first.

        Ties in time are ordered by sensor and quantity. At most ``limit`` readings.
        """
        sql = (
            "SELECT s.org, s.device, s.sensor, s.quantity, r.value, r.time "
            "FROM series AS s JOIN readings AS r ON r.series_id = s.id "
            "WHERE s.device = ? AND s.org = ? AND r.time >= ? AND r.time < ?"
        )
        params: list[object] = [device, org, start, end]
        if sensor is not None:
            sql += " AND s.sensor = ?"
            params.append(sensor)
        if quantity is not None:
            sql += " AND s.quantity = ?"
            params.append(quantity)
        sql += " ORDER BY r.time, s.sensor, s.quantity LIMIT ?"
        params.append(limit)
        with self._translate(f"read readings of {device}"):
            rows = self._conn().execute(sql, params).fetchall()
        return [Record(*row) for row in rows]

    def latest(
        self, devices: Collection[DeviceKey] | None = None, *, since: float | None = None
    ) -> list[Record]:
        """Return the newest reading of each (device, sensor, quantity) of ``devices`` (None: all),
        leaving out series whose newest reading is older than ``since``.

        One statement per 400 devices (SQLite's bound-parameter limit), one row per series read.
        """
        base = (
            "SELECT org, device, sensor, quantity, last_value, last_time FROM series "
            "WHERE last_time IS NOT NULL"
        )
        bound: list[float] = []
        if since is not None:
            base += " AND last_time >= ?"
            bound.append(since)
        order = " ORDER BY device, sensor, quantity"
        with self._translate("read the latest readings"):
            conn = self._conn()
            if devices is None:
                return [Record(*row) for row in conn.execute(base + order, bound)]
            keys = sorted(set(check_keys(devices)))
            rows: list[Record] = []
            for i in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = keys[i : i + _KEYS_PER_QUERY]
                values = ", ".join(["(?, ?)"] * len(chunk))
                sql = f"{base} AND (org, device) IN (VALUES {values})"
                rows.extend(Record(*row) for row in conn.execute(sql, [*bound, *itertools.chain(*chunk)]))
        rows.sort(key=lambda r: (r.device, r.sensor, r.quantity))
        return rows

    def devices(
        self, org: str | None = None, *, keys: Collection[DeviceKey] | None = None
    ) -> list[DeviceSeen]:
        """Return every device with readings (of ``org``, or of all; only ``keys`` if given),
        ordered by org and device."""
        sql = "SELECT org, device, first_seen, last_seen, readings FROM devices WHERE 1"
        params: list[str] = []
        if org is not None:
            sql += " AND org = ?"
            params.append(org)
        with self._translate("read the devices"):
            conn = self._conn()
            if keys is None:
                return [DeviceSeen(*row) for row in conn.execute(sql + " ORDER BY org, device", params)]
            wanted = sorted(set(check_keys(keys)))
            out: list[DeviceSeen] = []
            for i in range(0, len(wanted), _KEYS_PER_QUERY):
                chunk = wanted[i : i + _KEYS_PER_QUERY]
                values = ", ".join(["(?, ?)"] * len(chunk))
                chunk_sql = f"{sql} AND (org, device) IN (VALUES {values})"
                out.extend(
                    DeviceSeen(*row) for row in conn.execute(chunk_sql, [*params, *itertools.chain(*chunk)])
                )
        out.sort(key=lambda d: (d.org, d.device))
        return out

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters, newest first."""
        with self._translate("read the dead letters"):
            rows = (
                self._conn()
                .execute(
                    "SELECT received_at, topic, payload, code, reason FROM dead_letters "
                    "ORDER BY received_at DESC, id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [
            DeadLetter(t, topic, bytes(payload), code, reason) for t, topic, payload, code, reason in rows
        ]

    def count_dead_letters(self) -> int:
        """Return how many dead letters the store holds."""
        with self._translate("count the dead letters"):
            row = self._conn().execute("SELECT count(*) FROM dead_letters").fetchone()
        return int(row[0])

    def health(self) -> None:
        """Check that the file answers a query (one page read, never a count of the readings)."""
        with self._translate("read the schema version"):
            self._conn().execute("PRAGMA user_version").fetchone()

    def _complete_from(self) -> float:
        """From when the 5- and 30-second rollups are complete: read anew (retention moves it)."""
        with self._translate("read the fine rollups' start"):
            row = self._conn().execute("SELECT complete_from FROM fine_rollups WHERE id = 1").fetchone()
        return -math.inf if row is None else float(row[0])

    def refresh_rollups(self) -> int:
        """Recompute the rollups of the minutes written since the last refresh; return how many.

        Raises:
            StoreError: the refresh failed (it rolled back; the minutes stay marked).
        """
        with self._translate("refresh the rollups"), self._lock:
            conn = self._conn()
            if conn.execute("SELECT 1 FROM rollup_dirty LIMIT 1").fetchone() is None:
                return 0
            with self._transaction(conn):
                return self._refresh(conn)

    def refresh_rollups_if_due(self, now: float, every_s: float) -> int | None:
        """Refresh the rollups unless a writer of this file did so less than ``every_s`` ago.

        For writers refreshing on a period (the ``sqlite`` sink): with several writers on one
        file, the first whose period is up refreshes the minutes all of them marked and records
        ``now`` in the file; the others skip until ``every_s`` has passed since, so the file is
        refreshed about once per period whatever the number of writers. Skipping loses nothing:
        the minutes stay marked for the next refresh (or a read, :meth:`windows`). A recorded
        time more than ``every_s`` after ``now`` (the clock went back) counts as long ago.

        Args:
            now: UTC epoch seconds now, the same clock for every writer of the file.
            every_s: the period.

        Returns:
            How many minute rollups were recomputed, or None if the refresh was skipped.

        Raises:
            StoreError: the refresh failed (it rolled back; the minutes stay marked).
        """
        with self._translate("refresh the rollups"), self._lock:
            conn = self._conn()
            # Read first outside a transaction (WAL: no lock), then again under the write lock,
            # where another writer may have refreshed in between.
            if self._refreshed_since(conn, now - every_s, now + every_s):
                return None
            if conn.execute("SELECT 1 FROM rollup_dirty LIMIT 1").fetchone() is None:
                return 0
            with self._transaction(conn):
                if self._refreshed_since(conn, now - every_s, now + every_s):
                    return None
                refreshed = self._refresh(conn)
                conn.execute("INSERT OR REPLACE INTO rollup_refresh (id, refreshed_at) VALUES (1, ?)", (now,))
                return refreshed

    @staticmethod
    def _refreshed_since(conn: sqlite3.Connection, since: float, until: float) -> bool:
        row = conn.execute("SELECT refreshed_at FROM rollup_refresh WHERE id = 1").fetchone()
        return row is not None and since < row[0] < until

    @staticmethod
    def _refresh(conn: sqlite3.Connection) -> int:
        """Recompute the marked minutes and their coarser windows, in the caller's transaction."""
        before = conn.total_changes
        conn.execute(_REFRESH_MINUTES)
        refreshed = conn.total_changes - before
        for statement in (*_REFRESH_FINE, *_REFRESH_COARSER):
            conn.execute(statement)
        # The marked minutes that lost their readings (retention): by key, not a scan of every rollup.
        conn.execute(
            "DELETE FROM rollups WHERE (series_id, width, start) IN "
            "(SELECT series_id, 60, minute FROM rollup_dirty) AND count = 0"
        )
        conn.execute("DELETE FROM rollup_dirty")
        return refreshed

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
        """Return (``org``, ``device``)'s readings downsampled to windows of ``every`` seconds.

        Windows are aligned to the epoch (a window starts at a multiple of ``every``); one per
        series and window that has readings, ordered by start, sensor and quantity. A width that is
        a multiple of one of :data:`ROLLUP_WIDTHS` reads the coarsest such rollup, anything else
        the readings: a year of daily windows reads one row per day. With rollups, a window
        includes the whole rollup window its ``start`` falls in. A width under a minute's multiples
        that is a multiple of one of :data:`FINE_WIDTHS` (5, 30 s) reads that rollup between the
        range's first and last whole rollup windows and the readings at its ends: exactly the
        range's readings. The same windows as :meth:`series_windows`, one tuple each.
        """
        # tuple.__new__, not Window(...): the named tuple's own __new__ is Python, ~4x the cost.
        new = tuple.__new__
        out = [
            new(Window, head + row)
            for head, rows in self._series_rows(org, device, start, end, every, sensor, quantity)
            for row in rows
        ]
        out.sort(key=_WINDOW_START)  # stable: the series' order is kept within a start
        return out

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
        """Return :meth:`windows` as columns per series, in (sensor, quantity) order.

        Each series is read on its own, oldest first, so its rows become its columns as they are
        (one ``zip``): no Python object per window. ``means_only`` leaves ``mins`` and ``maxes``
        empty (a rollup row holds them anyway: nothing less to read here).
        """
        found = self._series_rows(org, device, start, end, every, sensor, quantity)
        if means_only:
            out = []
            for head, rows in found:
                starts, counts, means, *_ = zip(*rows, strict=True)
                out.append(SeriesWindows(*head, list(starts), list(counts), list(means), [], []))
            return out
        return [SeriesWindows(*head, *map(list, zip(*rows, strict=True))) for head, rows in found]

    def _series_rows(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        every: float,
        sensor: str | None,
        quantity: str | None,
    ) -> list[tuple[tuple[str, str, str, str], list[_Row]]]:
        """The windows of :meth:`windows` per series that has any, in (sensor, quantity) order:
        ((org, device, sensor, quantity), rows of (start, count, mean, min, max) oldest first)."""
        check_window_width(every)
        fine = _fine_width(every)
        parts = None if fine is not None else _rollup_parts(start, end, every)
        params: dict[str, object] = {"every": every, "device": device, "org": org}
        where = ""
        if sensor is not None:
            where += " AND s.sensor = :sensor"
            params["sensor"] = sensor
        if quantity is not None:
            where += " AND s.quantity = :quantity"
            params["quantity"] = quantity
        # (table, which of its rows are the series', time column, aggregates of a window, from, to)
        # of each read, oldest first.
        reads: list[tuple[str, str, str, str, float, float]] = []
        raw = ("readings AS r", "r.series_id = :sid", "time")
        if fine is not None:
            self.refresh_rollups()
            since = self._complete_from()
            for i, (width, lo, hi) in enumerate(_fine_parts(start, end, fine, since)):
                if width is None:
                    reads.append((*raw, _RAW_AGGREGATES, lo, hi))
                    continue
                params[f"width{i}"] = width
                rollup = ("rollups AS r", f"r.series_id = :sid AND r.width = :width{i}", "start")
                reads.append((*rollup, _PLAIN if width == every else _ROLLUP_AGGREGATES, lo, hi))
        elif parts is None:
            reads.append((*raw, _RAW_AGGREGATES, start, end))
        else:
            self.refresh_rollups()
            for i, (width, lo, hi) in enumerate(parts):
                params[f"width{i}"] = width
                rollup = ("rollups AS r", f"r.series_id = :sid AND r.width = :width{i}", "start")
                reads.append((*rollup, _PLAIN if width == every else _ROLLUP_AGGREGATES, lo, hi))
        with self._translate(f"read windows of {device}"):
            conn = self._conn()
            statements = []
            for i, (table, match, column, aggregates, lo, hi) in enumerate(reads):
                params.update({f"lo{i}": lo, f"hi{i}": hi})
                statements.append(
                    self._window_statement(conn, i, table, column, aggregates, lo, hi, every, match, params)
                )
            out = []
            with self._snapshot(conn):  # every series as of one moment
                series = conn.execute(
                    "SELECT id, sensor, quantity FROM series AS s "
                    f"WHERE s.device = :device AND s.org = :org{where} ORDER BY s.sensor, s.quantity",
                    params,
                ).fetchall()
                for sid, sensor_name, quantity_name in series:
                    params["sid"] = sid
                    found = [conn.execute(sql, params).fetchall() for sql in statements]
                    # Neighbouring reads share a window at most: the one their boundary falls in.
                    rows = found[0] if len(found) == 1 else _join_rows(found)
                    if rows:
                        out.append(((org, device, sensor_name, quantity_name), rows))
        return out

    def _window_statement(
        self,
        conn: sqlite3.Connection,
        i: int,
        table: str,
        column: str,
        aggregates: str,
        lo: float,
        hi: float,
        every: float,
        match: str,
        params: dict[str, object],
    ) -> str:
        """The SQL of read ``i`` of :meth:`windows`: one series' windows of ``every`` s (the series
        ``:sid``), oldest first, of the rows of ``table`` that ``match`` with ``lo <= column < hi``.

        A window of one rollup row reads the rows as they are, in index order. Otherwise each
        window is one index seek on ``(series_id, column)`` over the connection's ``window_index``
        table (0, 1, 2, ...), grouped in the order the loop produces: SQLite never sorts the rows
        (grouping a 6-hour chart's 216,000 readings through its sorter cost ~1.7x the seeks).
        Widths that are not whole seconds, and more windows than ``window_index`` holds, group with
        ``CAST(column / every)`` and a sort. One statement per series: the same seeks without the
        join and grouping by series (a 24-hour chart of minute rollups: ~0.8x the SQL time).
        """
        rows = f"{table} WHERE {match} AND r.{column} >= :lo{i} AND r.{column} < :hi{i}"
        if aggregates == _PLAIN:
            return f"SELECT r.{column}, {aggregates} FROM {rows} ORDER BY r.{column}"
        first = math.floor(lo / every)
        count = math.ceil(hi / every) - first
        if not float(every).is_integer() or not self._window_index(conn, count):
            return (
                f"SELECT CAST(r.{column} / :every AS INTEGER) * :every AS w, {aggregates} "
                f"FROM {rows} GROUP BY w ORDER BY w"
            )
        params.update({f"first{i}": first, f"count{i}": count})
        w = f"(:first{i} + n.i) * :every"
        return (
            f"SELECT {w}, {aggregates} FROM temp.window_index AS n CROSS JOIN {table} "
            f"WHERE n.i < :count{i} AND {match} "
            f"AND r.{column} >= max(:lo{i}, {w}) AND r.{column} < min(:hi{i}, {w} + :every) "
            "GROUP BY n.i ORDER BY n.i"
        )

    def _window_index(self, conn: sqlite3.Connection, count: int) -> bool:
        """Make ``conn``'s ``temp.window_index`` hold 0 .. ``count`` - 1 (kept for its next reads);
        False when that is more than :data:`_WINDOW_INDEX_MAX` rows."""
        if count > _WINDOW_INDEX_MAX:
            return False
        known = getattr(self._local, "window_index", None)
        have = known[1] if known is not None and known[0] is conn else 0
        if count > have:
            size = min(_WINDOW_INDEX_MAX, max(count, 2 * have, 4096))
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS window_index (i INTEGER PRIMARY KEY)")
            conn.execute(
                "INSERT OR IGNORE INTO temp.window_index (i) WITH RECURSIVE c(i) AS "
                "(SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?) SELECT i FROM c",
                (have, size),
            )
            self._local.window_index = (conn, size)
        return True

    def set_retention(
        self,
        org: str,
        raw_days: float | None,
        minute_days: float | None = None,
        hour_days: float | None = None,
    ) -> None:
        """Keep ``org``'s readings (and their 5-, 30-second rollups) ``raw_days``, its minute (5-,
        15-minute) rollups ``minute_days`` and hour (3-, 12-hour, day) rollups ``hour_days`` (None:
        forever). Applied by :meth:`apply_retention`.
        """
        for what, days in (("raw_days", raw_days), ("minute_days", minute_days), ("hour_days", hour_days)):
            if days is not None and days <= 0:
                raise StoreError(f"retention {what}={days} for {org}: use a positive number of days or None")
        with self._translate(f"set the retention of {org}"), self._lock:
            conn = self._conn()
            with self._transaction(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO retention (org, raw_days, minute_days, hour_days) "
                    "VALUES (?, ?, ?, ?)",
                    (org, raw_days, minute_days, hour_days),
                )

    def apply_retention(self, now: float) -> int:
        """Delete what each org's retention no longer keeps; return the readings deleted.

        Rollups are refreshed first, so a minute's rollup outlives its readings.
        """
        self.refresh_rollups()
        deleted = 0
        with self._translate("apply the retention"), self._lock:
            conn = self._conn()
            policies = conn.execute("SELECT org, raw_days, minute_days, hour_days FROM retention").fetchall()
            with self._transaction(conn):
                for org, raw_days, minute_days, hour_days in policies:
                    if raw_days is not None:
                        cutoff = now - raw_days * 86_400
                        counts = conn.execute(
                            "SELECT s.device, count(*) FROM series AS s JOIN readings AS r "
                            "ON r.series_id = s.id WHERE s.org = ? AND r.time < ? GROUP BY s.device",
                            (org, cutoff),
                        ).fetchall()
                        conn.execute(
                            "DELETE FROM readings WHERE time < ? AND series_id IN "
                            "(SELECT id FROM series WHERE org = ?)",
                            (cutoff, org),
                        )
                        conn.executemany(
                            "UPDATE devices SET readings = readings - ? WHERE org = ? AND device = ?",
                            [(n, org, dev) for dev, n in counts],
                        )
                        deleted += sum(n for _, n in counts)
                        self._drop_fine_rollups(conn, org, cutoff)
                    for width in ROLLUP_WIDTHS:
                        days = minute_days if width < 3600 else hour_days
                        if days is not None:
                            conn.execute(
                                "DELETE FROM rollups WHERE width = ? AND start < ? AND series_id IN "
                                "(SELECT id FROM series WHERE org = ?)",
                                (width, now - days * 86_400, org),
                            )
                self._keep_fine_rollups(conn, now)
        return deleted

    @staticmethod
    def _keep_fine_rollups(conn: sqlite3.Connection, now: float) -> None:
        """Delete the 5- and 30-second rollups older than :data:`_FINE_KEEP_S` before ``now`` (the
        whole minutes), and record that they are complete only from then on."""
        horizon = float(math.floor((now - _FINE_KEEP_S) / 60) * 60)
        row = conn.execute("SELECT complete_from FROM fine_rollups WHERE id = 1").fetchone()
        if row is not None and row[0] >= horizon:
            return
        conn.execute(
            f"DELETE FROM rollups WHERE width IN ({_FINE}, {_FINE_2}) AND start < ? AND series_id IN "
            "(SELECT id FROM series)",
            (horizon,),
        )
        conn.execute("INSERT OR REPLACE INTO fine_rollups (id, complete_from) VALUES (1, ?)", (horizon,))

    @staticmethod
    def _drop_fine_rollups(conn: sqlite3.Connection, org: str, cutoff: float) -> None:
        """Delete ``org``'s 5- and 30-second rollups with the readings before ``cutoff``: those
        that start before it, then the window ``cutoff`` falls in again from its readings left."""
        conn.execute(
            f"DELETE FROM rollups WHERE width IN ({_FINE}, {_FINE_2}) AND start < ? AND series_id IN "
            "(SELECT id FROM series WHERE org = ?)",
            (cutoff, org),
        )
        for width in FINE_WIDTHS:
            edge = float(math.floor(cutoff / width) * width)
            if edge < cutoff:
                conn.execute(
                    "INSERT OR REPLACE INTO rollups (series_id, width, start, count, sum, min, max) "
                    "SELECT r.series_id, ?, ?, count(*), sum(r.value), min(r.value), max(r.value) "
                    "FROM series AS s CROSS JOIN readings AS r ON r.series_id = s.id AND r.time >= ? "
                    "AND r.time < ? WHERE s.org = ? GROUP BY r.series_id",
                    (width, edge, cutoff, edge + width, org),
                )

    def retention(self) -> dict[str, tuple[float | None, float | None, float | None]]:
        """Return per org the (raw, minute, hour) days :meth:`set_retention` recorded."""
        with self._translate("read the retention"):
            rows = self._conn().execute("SELECT org, raw_days, minute_days, hour_days FROM retention")
        return {org: (raw, minute, hour) for org, raw, minute, hour in rows}

    def count_readings(self) -> int:
        """Return the number of distinct readings stored."""
        with self._translate("count the readings"):
            row = self._conn().execute("SELECT coalesce(sum(readings), 0) FROM devices").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close every connection of every thread. Further calls raise :class:`StoreError`."""
        with self._conn_lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            # A connection still in use by another thread fails to close; it dies with that thread.
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"


def from_url(url: str) -> SqliteStore:
    """Open the store named by ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a plain path.

    Raises:
        StoreError: the URL names no file, or the file cannot be opened.
    """
    path = url.removeprefix("sqlite://")
    if path != url:
        if not path.startswith("/") or len(path) < 2:
            raise StoreError(
                f"store URL {url!r} names no file: use sqlite:///relative/file.db "
                "or sqlite:////absolute/file.db"
            )
        path = path[1:]
    return SqliteStore(path)
