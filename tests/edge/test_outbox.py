"""Tests of edge/outbox.py: the store-and-forward outbox on its own."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.outbox import Outbox, OutboxFull
from kits.models import OutboxSettings

T0 = 1_772_618_400.0


def _fill(box: Outbox, n: int, start: float = T0) -> None:
    for k in range(n):
        box.add([("s", "temperature", 20.0 + k)], time=start + k, mono=float(k))


def test_rows_go_pending_then_sent_then_pruned(tmp_path: Path) -> None:
    """Test the life of a reading: pending, taken in time order, sent on ack, pruned after retention."""
    now = [T0 + 100]
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(retention_days=1), clock=lambda: now[0])
    box.add([("s", "temperature", 2.0)], time=T0 + 5, mono=0.0)
    box.add([("s", "temperature", 1.0)], time=T0 + 1, mono=0.0)  # stamped later, older
    assert box.pending == 2 and box.oldest_pending() == T0 + 1
    taken = box.take(10)
    assert [r.value for r in taken] == [1.0, 2.0]
    assert box.take(10) == []  # in flight: not taken twice
    box.mark_sent([r.id for r in taken])
    assert box.pending == 0 and box.oldest_pending() is None
    assert len(box.history(T0, T0 + 10)) == 2  # kept for resend
    now[0] = T0 + 2 * 86400
    assert box.prune() == 2
    assert box.history(T0, T0 + 10) == []


def test_a_released_reading_is_taken_again(tmp_path: Path) -> None:
    """Test that a reading whose publish failed goes back to the queue."""
    box = Outbox(None)
    _fill(box, 3)
    first = box.take(2)
    box.release(r.id for r in first)
    assert [r.id for r in box.take(10)] == [r.id for r in first] + [first[-1].id + 1]


def test_the_backlog_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    """Test that beyond max_pending the oldest readings are dropped and the drop is counted, persistently."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path, OutboxSettings(max_pending=100))
    _fill(box, 130)
    assert box.pending == 100
    assert box.counter("dropped") == 30
    assert box.take(1)[0].value == 20.0 + 30
    box.close()
    again = Outbox(path, OutboxSettings(max_pending=100))
    assert again.pending == 100 and again.counter("dropped") == 30


def test_disk_full_is_a_clear_error_and_pruning_makes_room(tmp_path: Path) -> None:
    """Test that a full disk (simulated with SQLite's max_page_count) raises OutboxFull saying what to do."""
    box = Outbox(tmp_path / "o.sqlite")
    box._db.execute("PRAGMA max_page_count = 12")
    with pytest.raises(OutboxFull, match="free space"):
        for k in range(10_000):
            box.add([("s", "temperature", float(k))] * 10, time=T0 + k, mono=0.0)
    assert box.write_errors == 1
    assert box.integrity() == "ok"


def test_failed_writes_leave_the_pending_count_true(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that writes and acknowledgements whose COMMIT fails do not change ``pending`` (on a
    full filesystem SQLite's WAL fails at COMMIT: ``pending`` counted each failed write's readings,
    inflating the backlog in meta, and would have dropped real readings at ``max_pending``).

    The COMMIT failure is the one a full 8 MiB tmpfs gives (tests/reliability/test_edge_faults.py
    fills a real one); here it is raised on demand."""
    box = Outbox(tmp_path / "o.sqlite")
    box.add([("s", "temperature", 1.0)] * 10, time=T0, mono=0.0)
    commit = box._commit
    full = {"on": True}

    def failing_commit(force: bool = False) -> None:
        if full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        commit(force)

    monkeypatch.setattr(box, "_commit", failing_commit)
    for k in range(5):
        with pytest.raises(OutboxFull):
            box.add([("s", "temperature", float(k))] * 10, time=T0 + 1 + k, mono=0.0)
    with pytest.raises(OutboxFull):
        box.mark_sent([r.id for r in box.take(10)])

    def real() -> int:
        return int(box._db.execute("SELECT COUNT(*) FROM readings WHERE state = 0").fetchone()[0])

    assert box.pending == real() == 10
    full["on"] = False
    box.add([("s", "temperature", 9.0)] * 10, time=T0 + 9, mono=0.0)
    assert box.pending == real() == 20


def test_batched_mode_commits_every_batch_s(tmp_path: Path) -> None:
    """Test that the SD-card-saving mode holds writes in one transaction until batch_s passes."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path, OutboxSettings(sync="batched", batch_s=3600))
    _fill(box, 5)
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0  # the stated loss window
    box.flush()
    assert other.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 5


def test_unsynced_readings_of_an_earlier_boot_are_dropped_and_counted(tmp_path: Path) -> None:
    """Test that readings whose monotonic clock is gone (reboot before NTP) are not stamped wrongly."""
    path = tmp_path / "o.sqlite"
    Outbox(path, boot_id="a").add([("s", "temperature", 1.0)], time=None, mono=10.0)
    box = Outbox(path, boot_id="b")
    box.add([("s", "temperature", 2.0)], time=None, mono=20.0)
    assert box.stamp(T0, 30.0) == 1
    assert [(r.value, r.time) for r in box.take(5)] == [(2.0, T0 - 10.0)]
    assert box.counter("unstampable") == 1


_WRITER = """
import sys
from edge.outbox import Outbox
box = Outbox(sys.argv[1])
k = 0
while True:
    rows = box.add([("s", "temperature", float(k)), ("s", "humidity", float(k))], time=1.78e9 + k, mono=0.0)
    print(rows[-1].id, flush=True)
    k += 1
"""


def test_kill_9_mid_write_leaves_the_outbox_intact(tmp_path: Path) -> None:
    """Test that a kill -9 of a writing process (synchronous=FULL) loses no reading whose write returned."""
    path = tmp_path / "o.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout is not None
    returned = []
    deadline = time.monotonic() + 20
    while len(returned) < 300 and time.monotonic() < deadline:
        returned.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(returned) >= 300
    box = Outbox(path)
    assert box.integrity() == "ok"
    ids = {row[0] for row in box._db.execute("SELECT id FROM readings")}
    assert set(returned) <= ids
