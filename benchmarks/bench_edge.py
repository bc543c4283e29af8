"""The edge agent: its footprint as shipped, and its outbox's write and drain rates.

- ``suitcase edge run`` (the real CLI in its own process), 6 emulated sensors at 1 Hz for
  ``SUITCASE_BENCH_EDGE_S`` seconds (default 60), against an import-only baseline process (the same
  imports, no work) run beside it: RSS and CPU (issue 3: RSS <= 60 MB, <= 2 % of a core).
- Outbox writes: cycles of 15 readings with ``synchronous=FULL`` against plain SQLite inserts of
  the same rows in the same mode.
- Outbox drain after a simulated 6 h outage at 1 Hz (324,000 readings) into Mosquitto loaded with
  deploy/mosquitto/, against a plain paho client publishing the same packs; a persistent
  subscriber checks that nothing is lost and nothing doubled.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._timing import Figure
from edge.agent import Agent
from edge.emulated.bus import EmulatedI2C
from edge.outbox import Outbox
from kits.models import DeviceConfig, DeviceSensor, MqttSettings, OutboxSettings
from kits.wire import Record, decode_pack, encode_pack
from suitcase.broker import EmbeddedBroker, MosquittoBroker, find_mosquitto

__all__ = ["run"]

T0 = 1_780_000_000.0
SENSORS = [
    ("bme280", 0x77),
    ("sht4x", 0x44),
    ("scd4x", 0x62),
    ("sgp40", 0x59),
    ("pmsa003i", 0x12),
    ("veml7700", 0x10),
]
QUANTITIES = [
    ("bme280", "temperature"),
    ("bme280", "humidity"),
    ("bme280", "pressure"),
    ("sht4x", "temperature"),
    ("sht4x", "humidity"),
    ("scd4x", "co2"),
    ("sgp40", "voc_index"),
    ("pmsa003i", "pm1_0"),
    ("pmsa003i", "pm2_5"),
    ("pmsa003i", "pm10"),
    ("veml7700", "illuminance"),
    ("scd4x", "temperature"),
    ("scd4x", "humidity"),
    ("pmsa003i", "particles_03um"),
    ("pmsa003i", "particles_05um"),
]
_BASELINE = (
    "import time, sys, edge.cli, edge.agent, edge.outbox, edge.emulated, paho.mqtt.client, "
    "adafruit_bme280.basic, adafruit_sht4x, adafruit_scd4x, adafruit_sgp40, adafruit_pm25.i2c, "
    "adafruit_veml7700; time.sleep(float(sys.argv[1]))"
)


def _broker(workdir: Path) -> EmbeddedBroker | MosquittoBroker:
    broker: EmbeddedBroker | MosquittoBroker = (
        MosquittoBroker(workdir / "mosquitto") if find_mosquitto() else EmbeddedBroker()
    )
    broker.start()
    return broker


def _footprint(workdir: Path, broker: Any, seconds: float) -> list[Figure]:
    sensors = "\n".join(
        f'[[device.sensors]]\nname = "{p}"\npart = "{p}"\naddress = {a}\ninterval_s = 1.0\n'
        for p, a in SENSORS
    )
    config = workdir / "edge.toml"
    config.write_text(
        f'state_dir = "{workdir / "state"}"\nlog_level = "WARNING"\n'
        '[device]\ndevice = "bench-pi"\norg = "bench"\nbus = "emulated"\npublish_interval_s = 1.0\n'
        f'[device.mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n' + sensors
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    agent = subprocess.Popen(
        [sys.executable, "-m", "suitcase", "edge", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = subprocess.Popen([sys.executable, "-c", _BASELINE, str(seconds + 5)], env=env)
    procs = {"agent": psutil.Process(agent.pid), "base": psutil.Process(base.pid)}
    time.sleep(3.0)  # both past their imports; the agent past its sensors' start-up
    cpu0 = {k: p.cpu_times() for k, p in procs.items()}
    started = time.monotonic()
    rss = {k: 0 for k in procs}
    while time.monotonic() - started < seconds:
        for k, p in procs.items():
            rss[k] = max(rss[k], p.memory_info().rss)
        time.sleep(1.0)
    wall = time.monotonic() - started
    cpu = {
        k: (p.cpu_times().user + p.cpu_times().system) - (cpu0[k].user + cpu0[k].system)
        for k, p in procs.items()
    }
    agent.terminate()
    _, err = agent.communicate(timeout=30)
    base.kill()
    base.wait()
    if agent.returncode not in (0, -15):
        raise RuntimeError(f"suitcase edge run failed: {err.decode()[-2000:]}")
    mb = {k: v / 2**20 for k, v in rss.items()}
    pct = {k: 100 * v / wall for k, v in cpu.items()}
    return [
        Figure(
            f"edge run RSS {mb['agent']:.1f} MB (import-only {mb['base']:.1f} MB; budget 60 MB)",
            mb["agent"], "import-only RSS", mb["base"], 1, "run",
        ),
        Figure(
            f"edge run CPU {pct['agent']:.2f} % of a core (import-only {pct['base']:.2f} %; budget 2 %)",
            max(cpu["agent"], 1e-3), "import-only CPU", max(cpu["base"], 1e-3), 1, "run",
        ),
    ]  # fmt: skip


def _writes(workdir: Path, cycles: int = 5000) -> Figure:
    rows = [(s, q, 20.0) for s, q in QUANTITIES]
    box = Outbox(workdir / "write.sqlite", OutboxSettings(max_pending=10_000_000))
    started = time.perf_counter()
    for k in range(cycles):
        box.add(rows, time=T0 + k, mono=float(k))
    seconds = time.perf_counter() - started
    box.close()
    db = sqlite3.connect(workdir / "plain.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE r (id INTEGER PRIMARY KEY, s TEXT, q TEXT, v REAL, t REAL, m REAL, b TEXT, st INT)"
    )
    started = time.perf_counter()
    for k in range(cycles):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO r (s,q,v,t,m,b,st) VALUES (?,?,?,?,?,?,0)", [(*r, T0 + k, k, "b") for r in rows]
        )
        db.execute("COMMIT")
    baseline = time.perf_counter() - started
    db.close()
    return Figure(
        "outbox.add (15 readings/cycle, sync FULL)",
        seconds,
        "plain sqlite inserts",
        baseline,
        cycles * 15,
        "readings",
    )


class _Store:
    def __init__(self, broker: Any, client_id: str) -> None:
        self.keys: set[tuple[str, str, float]] = set()
        self.records = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("suitcase/v1/bench/+/telemetry", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        device = message.topic.split("/")[3]
        records = decode_pack(message.payload, org="bench", device=device, now=T0 + 1e6)
        with self.lock:
            self.records += len(records)
            self.keys.update((device + r.sensor, r.quantity, r.time) for r in records)

    def wait(self, count: int, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.keys) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _drain(
    workdir: Path, broker: Any, hours: float = float(os.environ.get("SUITCASE_BENCH_OUTAGE_H", "6"))
) -> Figure:
    seconds = int(hours * 3600)
    total = seconds * len(QUANTITIES)
    box = Outbox(workdir / "drain.sqlite", OutboxSettings(max_pending=10_000_000))
    with box._lock:
        box._db.execute("BEGIN")
        box._db.executemany(
            "INSERT INTO readings (sensor, quantity, value, time, mono, boot) VALUES (?,?,?,?,0,'b')",
            ((s, q, 20.0, T0 + k) for k in range(seconds) for s, q in QUANTITIES),
        )
        box._db.execute("COMMIT")
    box.close()

    store = _Store(broker, "bench-store-drain")
    config = DeviceConfig(
        device="bench-drain",
        org="bench",
        sensors=[DeviceSensor(name="absent", part="bme280", address=0x77, interval_s=3600)],
        bus="emulated",
        mqtt=MqttSettings(host=broker.host, port=broker.port),
        publish_interval_s=3600,
        outbox=OutboxSettings(max_pending=10_000_000, drain_readings_per_s=1e9),
    )
    agent = Agent(config, EmptyBus(), outbox=Outbox(workdir / "drain.sqlite", config.outbox))
    started = time.perf_counter()
    agent.start()
    store.wait(total)
    drained = time.perf_counter() - started
    while agent.outbox.pending and time.perf_counter() - started < 300:
        time.sleep(0.05)
    agent.stop()
    received, distinct = store.records, len(store.keys)
    store.close()
    if distinct != total or received != total:
        raise RuntimeError(f"drain: {total} readings, {distinct} distinct arrived, {received} in all")

    plain = [
        Record("bench", "bench-plain", s, q, 20.0, T0 + k) for k in range(seconds) for s, q in QUANTITIES
    ]
    packs = [encode_pack(plain[i : i + 250]) for i in range(0, len(plain), 250)]
    store = _Store(broker, "bench-store-plain")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-plain")
    client.max_inflight_messages_set(48)
    client.connect(broker.host, broker.port)
    client.loop_start()
    started = time.perf_counter()
    infos = [client.publish("suitcase/v1/bench/bench-plain/telemetry", p, qos=1) for p in packs]
    for info in infos:
        info.wait_for_publish(60)
    store.wait(total)
    baseline = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    store.close()
    return Figure(
        f"outbox drain after a {hours:g} h outage (nothing lost, nothing doubled)",
        drained, "plain paho QoS 1 publish", baseline, total, "readings",
    )  # fmt: skip


class EmptyBus(EmulatedI2C):
    """A bus with nothing on it: the drain benchmark measures publishing only."""


def run() -> list[Figure]:
    seconds = float(os.environ.get("SUITCASE_BENCH_EDGE_S", "60"))
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        workdir = Path(tmp)
        broker = _broker(workdir)
        try:
            figures = [_writes(workdir), _drain(workdir, broker)]
            figures += _footprint(workdir, broker, seconds)
        finally:
            broker.stop()
    return figures
