"""The store-and-forward outbox (docs/architecture.md, "Delivery guarantees" 1).

Every reading is written here before it is published. Rows go pending -> sent (when the broker's
PUBACK for the pack arrives) -> pruned once older than the retention window, so ``resend`` can
replay a time range. SQLite in WAL mode; ``synchronous=FULL`` by default, so a reading whose
:meth:`Outbox.add` returned survives a kill -9 or a power cut. ``sync="normal"`` survives a
crash but not a power cut; ``sync="batched"`` commits every ``batch_s`` seconds and may lose
that much on either (the SD-card-saving mode).

Readings taken before the clock synced are stored without a time, with their monotonic time and
the boot they were taken in; :meth:`Outbox.stamp` gives them their UTC time once the clock has
synced. The pending backlog is bounded: beyond ``max_pending`` the oldest are dropped and counted.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kits.errors import SuitcaseError
from kits.models import OutboxSettings

__all__ = ["PENDING", "SENT", "Outbox", "OutboxError", "OutboxFull", "Row"]

log = logging.getLogger(__name__)

PENDING = 0
SENT = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    quantity TEXT NOT NULL,
    value REAL NOT NULL,
    time REAL,            -- UTC epoch seconds; NULL until the clock has synced
    mono REAL,            -- monotonic time at the read, to stamp it later
    boot TEXT,            -- monotonic time is only comparable within one boot
    state INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS readings_state_time ON readings (state, time, id);
-- Counting the readings held for the clock (each publishing round) must not scan the backlog.
CREATE INDEX IF NOT EXISTS readings_unstamped ON readings (boot) WHERE time IS NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxError(SuitcaseError):
    """The outbox cannot be opened or written."""


class OutboxFull(OutboxError):
    """The disk (or the outbox's page limit) is full."""


@dataclass(frozen=True, slots=True)
class Row:
    """One stored reading."""

    id: int
    sensor: str
    quantity: str
    value: float
    time: float


class Outbox:
    """A device's outbox in one SQLite file (or in memory when ``path`` is None).

    Thread-safe: the sampler adds, the publisher takes and acknowledges, commands read history.

    Args:
        path: the database file; None keeps it in memory (demo, tests: nothing survives a restart).
        settings: bound, retention, sync mode and drain settings.
        boot_id: identifies this boot (``/proc/sys/kernel/random/boot_id`` on Linux).
        clock: UTC epoch time, for pruning.

    Raises:
        OutboxError: the file cannot be opened or is not an outbox.
    """

    def __init__(
        self,
        path: Path | str | None,
        settings: OutboxSettings | None = None,
        *,
        boot_id: str = "boot",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or OutboxSettings()
        self.path = None if path is None else Path(path)
        self._boot = boot_id
        self._clock = clock
        self._lock = threading.RLock()
        self._inflight: set[int] = set()
        self._cursor: tuple[float, int] | None = None
        self._in_tx = False
        self._last_commit = time.monotonic()
        self.write_errors = 0
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                ":memory:" if self.path is None else str(self.path),
                isolation_level=None,
                check_same_thread=False,
            )
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            sync = {"full": "FULL", "normal": "NORMAL", "batched": "NORMAL"}[self.settings.sync]
            self._db.execute(f"PRAGMA synchronous={sync}")
            self._db.executescript(_SCHEMA)
            self.pending = self._scalar("SELECT COUNT(*) FROM readings WHERE state = 0")
        except sqlite3.DatabaseError as exc:
            raise OutboxError(
                f"cannot open the outbox {self.path} ({exc}): check the disk and permissions, or move the "
                "file away to start a new outbox"
            ) from exc

    # ------------------------------------------------------------------ writing

    def add(self, values: Sequence[tuple[str, str, float]], *, time: float | None, mono: float) -> list[Row]:
        """Store readings taken together; ``time`` None while the clock has not synced.

        Returns the stored rows (with time 0.0 when unstamped). Once this returns (and in
        ``batched`` mode once the batch commits), the readings survive a kill -9.

        Raises:
            OutboxFull: the disk is full, even after pruning sent readings.
            OutboxError: any other write failure.
        """
        if not values:
            return []
        for attempt in (1, 2):
            pending = self.pending  # restored when the transaction fails: nothing was added
            try:
                with self._lock:
                    self._begin()
                    cur = self._db.cursor()
                    rows = []
                    for sensor, quantity, value in values:
                        cur.execute(
                            "INSERT INTO readings (sensor, quantity, value, time, mono, boot) "
                            "VALUES (?,?,?,?,?,?)",
                            (sensor, quantity, value, time, mono, self._boot),
                        )
                        rows.append(Row(int(cur.lastrowid or 0), sensor, quantity, value, time or 0.0))
                    self.pending += len(rows)
                    if self.pending > self.settings.max_pending:
                        self._drop_oldest(self.pending - self.settings.max_pending)
                    self._commit()
                    return rows
            except sqlite3.OperationalError as exc:
                self._rollback()
                self.pending = pending
                if "full" in str(exc) and attempt == 1 and self.prune(keep_s=0.0):
                    continue
                self.write_errors += 1
                raise self._error(exc) from exc
        raise AssertionError("unreachable")

    def _error(self, exc: sqlite3.Error) -> OutboxError:
        if "full" in str(exc):
            return OutboxFull(
                f"the outbox {self.path or '(memory)'} is full ({exc}): free space on the SD card; readings "
                "are published without store-and-forward meanwhile (held in memory while the broker is "
                "unreachable)"
            )
        return OutboxError(f"outbox write failed ({exc}): check the SD card")

    def _drop_oldest(self, count: int) -> None:
        cur = self._db.execute(
            "DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE state = 0 ORDER BY id LIMIT ?)",
            (count,),
        )
        dropped = cur.rowcount
        self.pending -= dropped
        self._bump("dropped", dropped)
        log.warning(
            "outbox backlog over %d readings: dropped the %d oldest (see meta outbox.dropped)",
            self.settings.max_pending,
            dropped,
        )

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def _begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True

    def _commit(self, force: bool = False) -> None:
        if not self._in_tx:
            return
        if (
            self.settings.sync == "batched"
            and not force
            and time.monotonic() - self._last_commit < self.settings.batch_s
        ):
            return
        self._db.execute("COMMIT")
        self._in_tx = False
        self._last_commit = time.monotonic()

    def _rollback(self) -> None:
        with self._lock:
            if self._in_tx:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._in_tx = False

    def flush(self) -> None:
        """Commit what the batched mode holds (on a clean stop)."""
        with self._lock:
            try:
                self._commit(force=True)
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise self._error(exc) from exc

    def stamp(self, wall: float, mono: float) -> int:
        """Give unstamped readings of this boot their UTC time, now that the clock has synced.

        Readings of earlier boots cannot be stamped (their monotonic clock is gone): they are
        dropped and counted. Returns how many were stamped.
        """
        with self._lock:
            pending = self.pending
            try:
                self._begin()
                cur = self._db.execute(
                    "UPDATE readings SET time = ? - (? - mono) WHERE time IS NULL AND boot = ?",
                    (wall, mono, self._boot),
                )
                stamped = cur.rowcount
                lost = self._db.execute("DELETE FROM readings WHERE time IS NULL").rowcount
                if lost:
                    self.pending -= lost
                    self._bump("unstampable", lost)
                    log.warning("%d readings of an earlier boot had no time and were dropped", lost)
                self._commit()
            except sqlite3.OperationalError as exc:
                self._rollback()
                self.pending = pending
                raise self._error(exc) from exc
            self._cursor = None
            return stamped

    # ------------------------------------------------------------------ publishing

    def take(self, limit: int) -> list[Row]:
        """Return up to ``limit`` stamped pending readings not yet in flight, oldest first."""
        with self._lock:
            out: list[Row] = []
            while len(out) < limit:
                if self._cursor is None:
                    cur = self._db.execute(
                        "SELECT id, sensor, quantity, value, time FROM readings "
                        "WHERE state = 0 AND time IS NOT NULL ORDER BY time, id LIMIT ?",
                        (limit + len(self._inflight),),
                    )
                else:
                    t, i = self._cursor
                    cur = self._db.execute(
                        # "time >= ?" first, so SQLite seeks the (state, time, id) index
                        "SELECT id, sensor, quantity, value, time FROM readings WHERE state = 0 "
                        "AND time >= ? AND (time > ? OR id > ?) ORDER BY time, id LIMIT ?",
                        (t, t, i, limit - len(out)),
                    )
                batch = cur.fetchall()
                if not batch:
                    break
                for row_id, sensor, quantity, value, t in batch:
                    self._cursor = (t, row_id)
                    if row_id in self._inflight:
                        continue
                    out.append(Row(row_id, sensor, quantity, value, t))
                    if len(out) == limit:
                        break
            self._inflight.update(r.id for r in out)
            return out

    def in_flight(self, ids: Iterable[int]) -> None:
        """Note readings published outside :meth:`take` (the live path) as in flight."""
        with self._lock:
            self._inflight.update(ids)

    def release(self, ids: Iterable[int]) -> None:
        """Forget in-flight readings that will not be acknowledged; they are taken again."""
        with self._lock:
            self._inflight.difference_update(ids)
            self._cursor = None

    def rewind(self) -> None:
        """Start the next :meth:`take` from the oldest pending reading (after a reconnect)."""
        with self._lock:
            self._cursor = None

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Mark readings the broker acknowledged as sent."""
        if not ids:
            return
        with self._lock:
            pending = self.pending
            try:
                self._begin()
                changed = 0
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    changed += self._db.execute(
                        f"UPDATE readings SET state = {SENT} WHERE state = 0 AND id IN ({marks})", chunk
                    ).rowcount
                self.pending -= changed
                self._commit()
            except sqlite3.OperationalError as exc:
                self._rollback()
                self.pending = pending
                raise self._error(exc) from exc
            finally:
                self._inflight.difference_update(ids)

    def prune(self, keep_s: float | None = None) -> int:
        """Delete sent readings older than the retention window; return how many."""
        keep = self.settings.retention_days * 86400.0 if keep_s is None else keep_s
        with self._lock:
            try:
                self._begin()
                n = self._db.execute(
                    f"DELETE FROM readings WHERE state = {SENT} AND time < ?", (self._clock() - keep,)
                ).rowcount
                self._commit(force=True)
            except sqlite3.OperationalError:
                self._rollback()
                return 0
            return n

    def history(
        self, start: float, end: float, *, after: tuple[float, int] | None = None, limit: int = 1000
    ) -> list[Row]:
        """Readings stamped in ``[start, end]``, sent or not, oldest first (for ``resend``)."""
        with self._lock:
            t, i = after if after is not None else (start, -1)
            cur = self._db.execute(
                "SELECT id, sensor, quantity, value, time FROM readings WHERE state IN (0, 2) "
                "AND time >= ? AND time <= ? AND (time > ? OR id > ?) "
                "ORDER BY time, id LIMIT ?",
                (max(start, t), end, t, i, limit),
            )
            return [Row(*r) for r in cur.fetchall()]

    # ------------------------------------------------------------------ health

    def counter(self, name: str) -> int:
        """A persisted counter: ``dropped`` (backlog bound), ``unstampable`` (earlier boot)."""
        with self._lock:
            return self._scalar("SELECT COALESCE((SELECT value FROM counters WHERE name = ?), 0)", (name,))

    def oldest_pending(self) -> float | None:
        """The time of the oldest stamped pending reading."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(time) FROM readings WHERE state = 0 AND time IS NOT NULL"
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

    def unstamped(self) -> int:
        """Readings waiting for the clock to sync."""
        with self._lock:
            return self._scalar(
                "SELECT COUNT(*) FROM readings INDEXED BY readings_unstamped WHERE time IS NULL"
            )

    def integrity(self) -> str:
        """SQLite's ``integrity_check``: ``ok`` when the file is sound."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def _scalar(self, sql: str, args: tuple[object, ...] = ()) -> int:
        row = self._db.execute(sql, args).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        """Commit and close."""
        with self._lock:
            try:
                self._commit(force=True)
            except sqlite3.Error as exc:
                log.error("outbox: last commit failed on close: %s", exc)
            self._db.close()
