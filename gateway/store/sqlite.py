"""The embedded time-series store: one SQLite file (WAL, ``synchronous=FULL``).

Schema (``PRAGMA user_version`` 1):

- ``series``: one row per (org, device, sensor, quantity), with the newest reading of that
  series (``last_time``, ``last_value``) so :meth:`SqliteStore.latest` reads one row per series.
- ``readings``: ``(series_id, time, value)``, ``PRIMARY KEY (series_id, time) WITHOUT ROWID``:
  a range query by device and time is one index range scan per series of the device, and a
  redelivered reading lands on its own key (overwrite, never a duplicate).
- ``devices``: per (org, device) the oldest and newest reading time and the count of distinct
  readings, maintained on write so :meth:`SqliteStore.devices` and
  :meth:`SqliteStore.count_readings` never scan the readings.
- ``dead_letters``: messages that broke the wire contract, with their code and reason.

Times are stored as SQLite REAL, i.e. the very IEEE-754 double of ``Record.time`` (UTC epoch
seconds): what :meth:`SqliteStore.readings` returns is bit-for-bit what was written, and the
idempotency key is that exact time.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.store.base import DeadLetter, DeviceSeen, StoreError
from kits.wire import Record

__all__ = ["SCHEMA_VERSION", "SqliteStore", "from_url"]

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 30_000

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
"""

_SeriesKey = tuple[str, str, str, str]


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
            conn.execute("PRAGMA journal_mode=WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StoreError(
                    f"store {self.path} has schema version {version}, this gateway knows "
                    f"{SCHEMA_VERSION}: upgrade IoT Suitcase or point it at another file"
                )
            with self._transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ plumbing

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
        if not records:
            return
        for rec in records:
            # INSERT OR IGNORE would also ignore the NOT NULL that NaN becomes: refuse it here.
            try:
                finite = math.isfinite(rec.value) and math.isfinite(rec.time)
            except TypeError:
                finite = False
            if not finite:
                raise StoreError(
                    f"reading {rec.device} {rec.sensor}/{rec.quantity} at {rec.time} has value "
                    f"{rec.value}: only finite numbers are stored (decode payloads with kits.wire)"
                )
        groups: dict[_SeriesKey, list[Record]] = {}
        for rec in records:
            groups.setdefault((rec.org, rec.device, rec.sensor, rec.quantity), []).append(rec)
        with self._translate(f"write {len(records)} readings"), self._lock:
            conn = self._conn()
            new_ids: dict[_SeriesKey, int] = {}
            with self._transaction(conn):
                per_device: dict[tuple[str, str], tuple[float, float, int]] = {}
                for key, recs in groups.items():
                    sid = self._series_id(conn, key)
                    new_ids[key] = sid
                    rows = [(sid, r.time, r.value) for r in recs]
                    before = conn.total_changes
                    conn.executemany(
                        "INSERT OR IGNORE INTO readings (series_id, time, value) VALUES (?, ?, ?)", rows
                    )
                    added = conn.total_changes - before
                    if added != len(rows):  # some keys existed (or repeat in this batch): overwrite
                        conn.executemany(
                            "UPDATE readings SET value = ?3 WHERE series_id = ?1 AND time = ?2 "
                            "AND value IS NOT ?3",
                            rows,
                        )
                    newest = recs[0]
                    for rec in recs:  # the last of equal times wins, as in the readings table
                        if rec.time >= newest.time:
                            newest = rec
                    conn.execute(
                        "UPDATE series SET last_time = ?2, last_value = ?3 "
                        "WHERE id = ?1 AND (last_time IS NULL OR last_time <= ?2)",
                        (sid, newest.time, newest.value),
                    )
                    oldest = min(r.time for r in recs)
                    lo, hi, count = per_device.get((key[0], key[1]), (oldest, newest.time, 0))
                    per_device[key[0], key[1]] = (min(lo, oldest), max(hi, newest.time), count + added)
                conn.executemany(
                    "INSERT INTO devices (org, device, first_seen, last_seen, readings) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (org, device) DO UPDATE SET "
                    "first_seen = min(first_seen, excluded.first_seen), "
                    "last_seen = max(last_seen, excluded.last_seen), "
                    "readings = readings + excluded.readings",
                    [(org, dev, lo, hi, n) for (org, dev), (lo, hi, n) in per_device.items()],
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

    # ------------------------------------------------------------------ reads

    def readings(
        self,
        device: str,
        start: float,
        end: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        limit: int = 100_000,
    ) -> list[Record]:
        """Return ``device``'s readings with ``start <= time < end``, oldest first.

        Ties in time are ordered by sensor and quantity. At most ``limit`` readings.
        """
        sql = (
            "SELECT s.org, s.device, s.sensor, s.quantity, r.value, r.time "
            "FROM series AS s JOIN readings AS r ON r.series_id = s.id "
            "WHERE s.device = ? AND r.time >= ? AND r.time < ?"
        )
        params: list[object] = [device, start, end]
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

    def latest(self, device: str | None = None) -> list[Record]:
        """Return the newest reading of each (device, sensor, quantity), of one device or all."""
        sql = (
            "SELECT org, device, sensor, quantity, last_value, last_time FROM series "
            "WHERE last_time IS NOT NULL"
        )
        params: list[object] = []
        if device is not None:
            sql += " AND device = ?"
            params.append(device)
        sql += " ORDER BY device, sensor, quantity"
        with self._translate("read the latest readings"):
            rows = self._conn().execute(sql, params).fetchall()
        return [Record(*row) for row in rows]

    def devices(self) -> list[DeviceSeen]:
        """Return every device with readings, ordered by org and device."""
        with self._translate("read the devices"):
            rows = (
                self._conn()
                .execute(
                    "SELECT org, device, first_seen, last_seen, readings FROM devices ORDER BY org, device"
                )
                .fetchall()
            )
        return [DeviceSeen(*row) for row in rows]

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
