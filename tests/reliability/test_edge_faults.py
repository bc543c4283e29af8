"""Faults at the edge: a Pi offline for hours, its outbox's disk full, its clock jumping.

Real agents (outbox on disk, ``synchronous=FULL``) reach the module's Mosquitto through a
:class:`~tests.reliability.conftest.Link` the test cuts and restores (the Pi's uplink); the
store is read back through the server's read interface and compared with every reading sent.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kits.wire import MAX_FUTURE_SKEW_S, Record, decode_pack
from tests.reliability.conftest import (
    ORG,
    SENSORS,
    Credentials,
    Link,
    Stack,
    drained,
    make_agent,
    running,
    shm_dir,
)
from tests.reliability.faults import ROOT, SCALE, Clock, Ledger, record, stored_rows, tally, wait_landed
from tests.services import require_service
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.influxdb]

QUANTITIES = {"bme280": ("temperature", "humidity", "pressure"), "sht4x": ("temperature", "humidity")}


def _six(t: float) -> list[tuple[str, str, float]]:
    """One second of the suite's six readings (what the sampler hands the outbox each cycle)."""
    values: list[tuple[str, str, float]] = []
    for s in SENSORS:
        for q in QUANTITIES.get(s.part, ("illuminance",)):
            values.append((s.name, q, round(20.0 + (t % 97) / 10 + len(values), 3)))
    return values


@pytest.fixture()
def shm() -> Iterator[Path]:
    yield from shm_dir("edge")


def test_an_edge_offline_for_6_hours_delivers_129600_readings_once(ready: Stack, shm: Path) -> None:
    """Test that 6 h offline of 6 sensors at 1 Hz (129,600 readings, compressed clock) wait in the
    outbox of a running agent and all land once after the link comes back, drained at the
    product's default rate (``outbox.drain_readings_per_s`` 5,000).

    Compressed: the backlog is written with the outbox calls the sampler makes each second
    (``Outbox.add`` of the cycle's six values, ``synchronous=FULL``), at a stepped clock; the
    emulated sensors' own conversion delays (10 ms per SHT4x read, as the chip) would make 6 h of
    real reads take minutes."""
    stack = ready
    hours = 6 * min(SCALE, 4.0)  # a soak: 24 h (518,400 readings)
    seconds = int(hours * 3600)
    clock = Clock(fixed=float(int(time.time() - seconds - 120)))
    begin = clock()
    link = Link(stack.broker.port)
    device = "offline"
    agent = make_agent(stack, device, shm, port=link.port, clock=clock, publish_interval_s=3600.0)
    agent.quiet = True  # its own sampling thread stays out of the way: the test writes each second
    ledger = Ledger()
    with running([agent]):
        link.cut()
        wait_until(lambda: not agent.connected, 30, "the agent to notice the link down")
        written = time.monotonic()
        for _ in range(seconds):
            now = clock()
            rows = agent.outbox.add(_six(now), time=now, mono=now)
            ledger.add(Record(ORG, device, r.sensor, r.quantity, r.value, r.time) for r in rows)
            clock.step(1.0)
        written = time.monotonic() - written
        assert len(ledger) == 6 * seconds == agent.outbox.pending
        clock.fixed = None  # the Pi's clock runs on from the real time
        link.restore()
        back = time.monotonic()
        recovery = stack.landed(ledger, begin=begin - 1, back=back, timeout=120 * SCALE, count=True)
        drained([agent])
    link.close()
    result = stack.tally(
        "Edge offline for hours (6 sensors at 1 Hz)",
        ledger,
        begin=begin - 1,
        recovery_s=recovery,
        conditions=f"{hours:g} h compressed into {written:.0f} s of outbox writes; drained at the "
        "default 5,000 readings/s; recovery includes the agent's reconnect backoff",
        order=60,
    )
    assert (result.sent, result.lost, result.doubled) == (6 * seconds, 0, 0), result.summary()


class _Zygote:
    """The agent_zygote process and a thread reading what it and its children say."""

    def __init__(self, state: Path, login: Credentials, port: int, t0: float, speed: float) -> None:
        args = [
            str(state),
            login.username,
            str(port),
            str(t0),
            str(speed),
            login.password,
            str(login.ca_file),
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.agent_zygote", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.returned: set[int] = set()
        self.writes = 0
        self.events: queue.Queue[tuple[str, int]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, *rest = line.split()
            if word == "ok":
                self.returned.update(int(i) for i in rest)
                self.writes += 1
            elif word in ("pid", "dead"):
                self.events.put((word, int(rest[0])))

    def expect(self, word: str, timeout: float = 30.0) -> int:
        got, pid = self.events.get(timeout=timeout)
        assert got == word, (got, pid)
        return pid

    def run(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self.expect("pid")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def _outbox_records(db: Path, device: str) -> tuple[list[Record], set[int]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT id, sensor, quantity, value, time FROM readings").fetchall()
    return [Record(ORG, device, s, q, v, t) for _, s, q, v, t in rows], {int(r[0]) for r in rows}


def test_100_kill_9_of_the_agent_during_outbox_writes_lose_nothing(ready: Stack, tmp_path: Path) -> None:
    """Test that 100 kill -9 of the real agent at random points of its outbox writes (the nearest
    to a power cut a test gets here: the process dies between any two instructions, but the
    kernel's page cache survives, so it does not prove what fsync promises) leave an outbox that
    passes ``integrity_check`` after every kill, keep every write that returned, and that every
    reading in it reaches the store once, nothing doubled (readings published but not yet marked
    sent are published again, and the store overwrites them)."""
    stack = ready
    kills = int(100 * SCALE)
    device = "killed"
    state = tmp_path / "state"
    state.mkdir()
    db = state / "outbox.sqlite"
    speed = 100.0  # every 10 ms sampling cycle is a second of readings: a write in every cycle
    t0 = time.time() - 3 * 3600 - kills * speed
    rng = random.Random(15)
    zygote = _Zygote(state, stack.credentials(device), stack.broker.port, t0, speed)
    damaged: list[str] = []
    startup: list[float] = []
    try:
        for _ in range(kills):
            writes = zygote.writes
            forked = time.monotonic()
            pid = zygote.run()
            wait_until(lambda w=writes: zygote.writes > w, 30, "the agent's first outbox write", every=0.005)
            startup.append(time.monotonic() - forked)
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(pid, signal.SIGKILL)
            zygote.expect("dead")
            with sqlite3.connect(db) as con:
                check = con.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                damaged.append(str(check))
    finally:
        zygote.close()
    assert not damaged, damaged
    records, ids = _outbox_records(db, device)
    missing = zygote.returned - ids
    assert not missing, f"{len(missing)} readings whose write had returned are gone from the outbox"
    agent = make_agent(stack, device, state)
    agent.quiet = True
    back = time.monotonic()  # the agent starts again: recovery includes its start and reconnect
    with running([agent]):
        drained([agent])
    ledger = Ledger()
    ledger.add(records)
    recovery = stack.landed(ledger, begin=t0 - 1, back=back, timeout=60, count=True)
    result = stack.tally(
        "Agent killed (-9) 100 times during outbox writes",
        ledger,
        begin=t0 - 1,
        recovery_s=recovery,
        conditions=f"{kills} kills at random points, integrity_check after each: all ok; "
        f"{len(zygote.returned):,} writes-returned readings all kept; nearest to a power cut",
        order=80,
        kills=kills,
        startup_s=round(sorted(startup)[len(startup) // 2], 3),
        writes_returned=len(zygote.returned),
    )
    assert (result.lost, result.doubled) == (0, 0), result.summary()


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB filesystem of this test (tmpfs with a size), unmounted at the end: the Pi's SD card
    (the outbox's write-ahead log alone takes up to 4 MiB before SQLite's checkpoint reuses it)."""
    mount = tmp_path / "sd"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        require_service(
            "a small filesystem (mount -t tmpfs, as root)", f"run the tests as root: {done.stderr!r}"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; return it."""
    filler = disk / "filler"
    block = b"\0" * 4096
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(block)
    return filler


def test_outbox_disk_full_then_freed(ready: Stack, small_disk: Path) -> None:
    """Test that the outbox's disk filling up (with the broker reachable, then with the link down
    too) and then freed loses nothing and doubles nothing: readings the outbox cannot take are
    published at once while the broker is reachable and held in memory while it is not (before,
    those were lost: 2 s offline on a full disk lost 12 readings), the outbox takes writes again
    once space is freed, and the backlog drains."""
    stack = ready
    begin = time.time() - 5
    link = Link(stack.broker.port)
    agent = make_agent(stack, "full", small_disk / "state", port=link.port)
    phase = 2.0 * SCALE
    with running([agent]):
        time.sleep(1.0)
        filler = _fill(small_disk)
        errors = agent.counters.outbox_errors
        time.sleep(phase)  # full, broker reachable
        errors_online = agent.counters.outbox_errors - errors
        link.cut()
        wait_until(lambda: not agent.connected, 30, "the agent to notice the link down")
        time.sleep(phase)  # full and offline
        errors_offline = agent.counters.outbox_errors - errors - errors_online
        filler.unlink()  # space freed
        time.sleep(1.0)
        link.restore()
        back = time.monotonic()
        assert agent.wait_connected(30)
        time.sleep(1.0)
        drained([agent])
    link.close()
    ledger = agent.ledger
    recovery = stack.landed(ledger, begin=begin, back=back, timeout=30)
    result = stack.tally(
        "Outbox disk full, then freed",
        ledger,
        begin=begin,
        recovery_s=recovery,
        conditions=f"8 MiB filesystem filled: {phase:.0f} s with the broker reachable, {phase:.0f} s "
        f"with the link down too; {errors_online + errors_offline} failed outbox writes",
        order=90,
        errors_online=errors_online,
        errors_offline=errors_offline,
    )
    assert errors_online + errors_offline > 0, "the disk never filled"
    assert (result.lost, result.doubled) == (0, 0), result.summary()


def _dead_lettered(stack: Stack, device: str) -> list[Record]:
    """The readings of ``device`` the gateway refused, decoded from their dead letters' payloads."""
    out: list[Record] = []
    for letter in stack.letters.dead_letters(limit=100_000):
        if f"/{device}/" in letter.topic:
            out += decode_pack(letter.payload, org=ORG, device=device, now=time.time() + 10 * 86400)
    return out


def test_the_edge_clock_jumping_back_and_forward_loses_and_doubles_nothing(
    ready: Stack, tmp_path: Path
) -> None:
    """Test that the Pi's clock stepping back 10 minutes (with the link down, so the outbox holds
    readings stamped out of order), forward again, 2 minutes ahead, then an hour ahead and back,
    loses and doubles nothing: every reading lands under the time it was stamped with, except
    those stamped more than 5 minutes ahead of the gateway's clock, which the wire contract
    refuses as from the future: each of those is a dead letter, its payload kept (the loss the
    README admits)."""
    stack = ready
    begin = time.time() - 3600
    clock = Clock()
    link = Link(stack.broker.port)
    device = "clock"
    agent = make_agent(stack, device, tmp_path / "state", port=link.port, clock=clock)
    step = 1.5 * SCALE
    with running([agent]):
        time.sleep(step)
        link.cut()
        clock.offset = -600.0  # an NTP step back while offline: the backlog is out of time order
        time.sleep(step)
        clock.offset = 0.0
        time.sleep(step)
        link.restore()
        assert agent.wait_connected(30)
        clock.offset = 120.0  # ahead, within the gateway's 300 s
        time.sleep(step)
        clock.offset = 3600.0  # an hour ahead: refused as from the future
        time.sleep(step)
        clock.offset = 0.0
        back = time.monotonic()
        time.sleep(step)
        drained([agent])
    link.close()
    ahead = [r for r in agent.ledger.records if r.time > time.time() + MAX_FUTURE_SKEW_S]
    landed_part = Ledger()
    landed_part.add(r for r in agent.ledger.records if r.time <= time.time() + MAX_FUTURE_SKEW_S)
    recovery = wait_landed(
        stack.reader, landed_part, since=back, timeout=30, start=begin, end=time.time() + 4000
    )
    refused = wait_until(lambda: _dead_lettered(stack, device) if ahead else [None], 30, "the dead letters")
    result = record(
        tally(
            "Edge clock jumping back and forward",
            agent.ledger,
            stored_rows(stack.reader, {(ORG, device)}, begin, time.time() + 4000),
            recovery_s=recovery,
            conditions=f"steps of -10 min (link down), +10 min, +2 min, +1 h, -1 h, {step:g} s each",
            admitted=f"{len(ahead)} readings stamped 1 h ahead: refused as from the future, each kept "
            "as a dead letter",
            order=100,
            ahead=len(ahead),
            dead_lettered=len(refused),
        )
    )
    assert ahead, "no reading was stamped an hour ahead"
    assert result.doubled == 0, result.summary()
    assert result.lost == len(ahead), result.summary()
    assert {(r.sensor, r.quantity, round(r.time, 3)) for r in ahead} <= {
        (r.sensor, r.quantity, round(r.time, 3)) for r in refused if r is not None
    }
