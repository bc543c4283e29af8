"""More gateways: CPU per reading with 1, 2 and 4 gateways in one shared subscription group.

On a 2-core machine throughput cannot double with more gateways; what must hold is that the CPU
spent per reading stays the same (no per-gateway overhead that grows with the group). Each run:
a fresh Mosquitto, ``suitcase gateway run --workers K --group bench`` (K processes, the
production supervisor), one SQLite store, 20,000 packs of 6 readings published at QoS 1; the CPU
of the whole gateway process tree until every reading is in the store, per 1,000 readings. The
baseline is the single gateway of the same run. Writes ``benchmarks/results/gateways.json``
and ``gateways.svg``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._svg import line_chart
from benchmarks._timing import Figure
from gateway.store import SqliteStore
from kits.wire import Record, build_topic, encode_pack
from suitcase.broker import MosquittoBroker

__all__ = ["run"]

RESULTS = Path(__file__).parent / "results"
QUANTITIES = ("temperature", "humidity", "pressure")


def _packs(n: int) -> list[tuple[str, bytes]]:
    out = []
    base = 1_790_000_000.0
    for i in range(n):
        device = f"dev-{i % 50}"
        t = base + i
        records = [
            Record("bench", device, s, q, 20.0 + (i % 100) / 10, t) for s in ("a", "b") for q in QUANTITIES
        ]
        out.append((build_topic("bench", device, "telemetry"), encode_pack(records)))
    return out


def _publish(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-feed-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(300)
    finally:
        client.disconnect()
        client.loop_stop()


def _cpu(pid: int) -> float:
    total = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def measure(gateways: int, packs: list[tuple[str, bytes]], folder: Path) -> dict[str, float]:
    """CPU seconds of ``gateways`` gateways per 1,000 readings, and the wall time of the drain."""
    with MosquittoBroker(folder / "mosquitto") as broker:
        store_path = folder / "store.db"
        env = dict(
            os.environ,
            SUITCASE_GATEWAY_STORE=str(store_path),
            SUITCASE_GATEWAY_MQTT_PORT=str(broker.port),
            SUITCASE_GATEWAY_CLIENT_ID=f"bench-gw-{uuid.uuid4().hex[:6]}",
            SUITCASE_GATEWAY_MQTT_VERSION="5",
        )
        command = [
            sys.executable,
            "-m",
            "suitcase",
            "gateway",
            "run",
            "--workers",
            str(gateways),
            "--group",
            "bench",
        ]
        if gateways == 1:
            command = [sys.executable, "-m", "suitcase", "gateway", "run", "--group", "bench", "--quiet"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not store_path.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(3.0)  # every member subscribed
            before = _cpu(process.pid)
            started = time.perf_counter()
            _publish(broker.host, broker.port, packs)
            expected = 6 * len(packs)
            with SqliteStore(store_path) as reader:
                deadline = time.monotonic() + 600
                while reader.count_readings() < expected and time.monotonic() < deadline:
                    time.sleep(0.25)
                got = reader.count_readings()
            wall = time.perf_counter() - started
            cpu = _cpu(process.pid) - before
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    return {
        "gateways": gateways,
        "readings": got,
        "expected": expected,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_s_per_1000": cpu / max(got, 1) * 1000,
    }


def run() -> list[Figure]:
    """Measure 1, 2 and 4 gateways; return the CPU-per-reading figures against one gateway."""
    count = int(os.environ.get("SUITCASE_BENCH_GATEWAY_PACKS", "20000"))
    packs = _packs(count)
    results = []
    for k in (1, 2, 4):
        with tempfile.TemporaryDirectory(prefix=f"bench-gw-{k}-") as folder:
            results.append(measure(k, packs, Path(folder)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateways.json").write_text(json.dumps(results, indent=2))
    line_chart(
        RESULTS / "gateways.svg",
        "Gateway CPU per 1,000 readings, shared group",
        "gateways",
        "CPU s per 1,000 readings",
        {"CPU s / 1,000 readings": [(r["gateways"], r["cpu_s_per_1000"]) for r in results]},
        log_x=False,
    )
    one = results[0]
    return [
        Figure(
            f"{r['gateways']} gateways in a group: CPU per reading",
            r["cpu_s_per_1000"],
            "1 gateway",
            one["cpu_s_per_1000"],
            1000,
            "readings",
        )
        for r in results[1:]
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.ratio:.2f}x {figure.baseline}")
    print((RESULTS / "gateways.json").read_text())
