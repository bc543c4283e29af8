"""A kill -9 of the real agent process (`python -m suitcase edge run`) while the broker is down.

The readings the agent sampled wait in its outbox; after the kill the outbox is intact and holds
them in time order, and the next run of the agent, with the broker up, drains them (docs/architecture.md,
"Delivery guarantees" 1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kits.wire import decode_pack
from suitcase.broker import MosquittoBroker, free_port

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

ROOT = Path(__file__).resolve().parents[2]
ORG = "aarhus"


def _config(path: Path, device: str, port: int) -> Path:
    path.write_text(
        f"""\
device: {device}
org: {ORG}
bus: emulated
scenario: footpath
publish_interval_s: 0.2
mqtt:
  host: 127.0.0.1
  port: {port}
sensors:
  - name: indoor
    part: bme280
    address: 0x77
    interval_s: 0.2
  - name: path
    part: vl53l1x
    address: 0x29
    interval_s: 0.5
    options: {{mode: passes, baseline_mm: 1500, threshold_mm: 300, rate_hz: 20, burst_s: 0.5}}
"""
    )
    return path


def _agent(config: Path, state: Path, log: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "suitcase", "edge", "run", "--config", str(config), "--state-dir", str(state)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )


def _pending(db: Path) -> list[tuple[int, str, str, float]]:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT id, sensor, quantity, time FROM readings WHERE state = 0 ORDER BY id"
        ).fetchall()
    return [(int(i), str(s), str(q), float(t)) for i, s, q, t in rows]


def _still_pending(db: Path, ids: list[int]) -> int:
    with sqlite3.connect(db) as con:
        marks = ",".join("?" * len(ids))
        return int(
            con.execute(f"SELECT COUNT(*) FROM readings WHERE state = 0 AND id IN ({marks})", ids).fetchone()[
                0
            ]
        )


class _Received:
    """A subscriber keeping the (sensor, quantity, time) of every telemetry record."""

    def __init__(self, broker: MosquittoBroker, device: str) -> None:
        self.keys: set[tuple[str, str, float]] = set()
        self.lock = threading.Lock()
        self.device = device
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"drain-{device}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"suitcase/v1/{ORG}/{device}/telemetry", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        records = decode_pack(message.payload, org=ORG, device=self.device, now=time.time())
        with self.lock:
            self.keys.update((r.sensor, r.quantity, round(r.time, 3)) for r in records)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_kill_9_of_the_agent_keeps_the_outbox_and_the_next_run_drains_it(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Test that after a kill -9 mid-run (broker down) the outbox passes integrity_check, its pending
    readings are stamped and in time order, and a restart with the broker up publishes them all."""
    device = f"kill-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"
    db = state / "outbox.sqlite"
    down = free_port()  # nothing listens there: the broker is down
    log = (tmp_path / "agent.log").open("w")
    agent = _agent(_config(tmp_path / "down.yaml", device, down), state, log)
    try:
        deadline = time.monotonic() + 45  # generous: the agent's start-up is slow on a loaded machine
        while time.monotonic() < deadline and agent.poll() is None:
            with contextlib.suppress(sqlite3.OperationalError):  # the file exists before its tables
                if db.exists() and len(_pending(db)) >= 40:
                    break
            time.sleep(0.2)
        assert agent.poll() is None, (tmp_path / "agent.log").read_text()
    finally:
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
    assert agent.returncode == -signal.SIGKILL

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    pending = _pending(db)
    assert len(pending) >= 40
    times = [t for _, _, _, t in pending]
    assert times == sorted(times)  # ids follow time: the backlog drains oldest first
    assert abs(times[-1] - time.time()) < 30
    assert {q for _, s, q, _ in pending if s == "path"} >= {"passes"}

    received = _Received(mosquitto, device)
    agent = _agent(_config(tmp_path / "up.yaml", device, mosquitto.port), state, log)
    try:
        wanted = {(s, q, round(t, 3)) for _, s, q, t in pending}
        deadline = time.monotonic() + 60  # the agent's start-up too: slow on a loaded machine
        while time.monotonic() < deadline:
            with received.lock:
                if wanted <= received.keys:
                    break
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()
            time.sleep(0.1)
        with received.lock:
            missing = wanted - received.keys
        assert not missing, f"{len(missing)} of {len(wanted)} pending readings never arrived"
        ids = [i for i, _, _, _ in pending]
        deadline = time.monotonic() + 30
        while _still_pending(db, ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _still_pending(db, ids) == 0  # acknowledged by the broker: marked sent
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        received.close()
        log.close()
    assert agent.returncode == 0
