"""More gateways: CPU per reading with 1, 2 and 4 gateways in one shared subscription group.

On a 2-core machine throughput cannot double with more gateways; what must hold is that the CPU
spent per reading stays the same (no per-gateway overhead that grows with the group). Each run:
a fresh Mosquitto, ``suitcase gateway run --workers K --group bench`` (K processes, the
production supervisor), one SQLite store, 12,000 packs of 6 readings published at QoS 1. The
measurement starts once every member is subscribed (its /metrics) and the tree's CPU is quiet
(start-up done), and ends when every reading is in the store: the CPU of the whole gateway
process tree per 1,000 readings, split into the gateway processes and their store writers. Rounds
of 1, 2, 4 (``SUITCASE_BENCH_GATEWAY_ROUNDS``, 3); each ratio is against the single gateway of its
own round and the figures are the medians. Writes ``benchmarks/results/gateways.json`` and
``gateways.svg``."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._svg import line_chart
from benchmarks._timing import Figure
from gateway.store import SqliteStore
from kits.wire import Record, build_topic, encode_pack
from suitcase.broker import MosquittoBroker, free_port

__all__ = ["run"]

RESULTS = Path(__file__).parent / "results"
QUANTITIES = ("temperature", "humidity", "pressure")
SIZES = (1, 2, 4)
MODES = ("stream", "drain")
STREAM_RATE = 1000.0  # packs/s (6,000 readings/s): well within what one gateway takes here


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


def _publish(host: str, port: int, messages: list[tuple[str, bytes]], rate: float | None = None) -> None:
    """Publish ``messages`` at QoS 1, ``rate`` packs per second (None: as fast as the broker takes them)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-feed-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = []
        started = time.monotonic()
        for i, (topic, payload) in enumerate(messages):
            if rate is not None and i % 50 == 0:
                time.sleep(max(started + i / rate - time.monotonic(), 0))
            infos.append(client.publish(topic, payload, qos=1))
        for info in infos:
            info.wait_for_publish(300)
    finally:
        client.disconnect()
        client.loop_stop()


def _tree_cpu(pid: int, supervised: bool) -> dict[str, float]:
    """CPU seconds of a gateway process tree so far: the gateway processes, their store writers and
    the rest (the supervisor of ``--workers``, multiprocessing's resource trackers)."""
    totals = {"gateways": 0.0, "writers": 0.0, "other": 0.0}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return totals
    for p in procs:
        try:
            t = p.cpu_times()
            line = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing-fork" in line:
            kind = "writers"
        elif "--client-id" in line or (p.pid == pid and not supervised):
            kind = "gateways"
        else:
            kind = "other"
        totals[kind] += t.user + t.system
    return totals


def _metric(port: int, name: str) -> float:
    """The sum of metric ``name`` over its labels on a gateway's /metrics; 0 if unreachable."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _settle(pid: int, supervised: bool, ports: list[int], timeout: float = 180.0) -> None:
    """Wait until every member is subscribed and the tree's CPU is quiet (its start-up is done:
    on two loaded cores, four gateways and their writers take 10-15 s to import and open)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_metric(p, "suitcase_gateway_connected") == 1 for p in ports):
            break
        time.sleep(0.5)
    last = sum(_tree_cpu(pid, supervised).values())
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sum(_tree_cpu(pid, supervised).values())
        if now - last < 0.02:
            return
        last = now


def measure(gateways: int, packs: list[tuple[str, bytes]], folder: Path, mode: str) -> dict[str, Any]:
    """CPU seconds of ``gateways`` gateways per 1,000 readings, and the wall time until all landed.

    ``mode`` "stream": the packs are published at :data:`STREAM_RATE` packs/s while the gateways
    run (the same rate for every group size: batches close by age). "drain": the gateways are
    stopped (SIGSTOP) while every pack is published, then resumed: they drain a backlog as fast as
    they can (batches full), and the publisher's pace is out of the figure.
    """
    with MosquittoBroker(folder / "mosquitto") as broker:
        store_path = folder / "store.db"
        metrics = free_port()
        env = dict(
            os.environ,
            SUITCASE_GATEWAY_STORE=str(store_path),
            SUITCASE_GATEWAY_MQTT_PORT=str(broker.port),
            SUITCASE_GATEWAY_CLIENT_ID=f"bench-gw-{uuid.uuid4().hex[:6]}",
            SUITCASE_GATEWAY_MQTT_VERSION="5",
        )
        command = [sys.executable, "-m", "suitcase", "gateway", "run", "--group", "bench", "--quiet"]
        command += ["--workers", str(gateways), "--metrics-port", str(metrics)]
        ports = [metrics + i for i in range(gateways)]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            supervised = gateways > 1
            _settle(process.pid, supervised, ports)
            if mode == "drain":
                tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
                for p in tree:
                    p.suspend()
                _publish(broker.host, broker.port, packs)
                before = _tree_cpu(process.pid, supervised)
                started = time.perf_counter()
                for p in tree:
                    p.resume()
            else:
                before = _tree_cpu(process.pid, supervised)
                started = time.perf_counter()
                _publish(broker.host, broker.port, packs, STREAM_RATE)
            expected = 6 * len(packs)
            with SqliteStore(store_path) as reader:
                deadline = time.monotonic() + 600
                while reader.count_readings() < expected and time.monotonic() < deadline:
                    time.sleep(0.25)
                got = reader.count_readings()
            # The store has a batch before its gateway hears back and acks it: wait for the acks,
            # part of the work (and of the batch counts read below).
            deadline = time.monotonic() + 60
            while sum(_metric(p, "suitcase_gateway_acked_total") for p in ports) < len(packs):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            wall = time.perf_counter() - started
            after = _tree_cpu(process.pid, supervised)
            batches = sum(_metric(p, "suitcase_gateway_batches_total") for p in ports)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    cpu = {kind: after[kind] - before[kind] for kind in after}
    total = sum(cpu.values())
    return {
        "mode": mode,
        "gateways": gateways,
        "readings": got,
        "expected": expected,
        "cpu_s": total,
        "cpu_gateways_s": cpu["gateways"],
        "cpu_writers_s": cpu["writers"],
        "cpu_other_s": cpu["other"],
        "batches": batches,
        "readings_per_batch": got / max(batches, 1),
        "wall_s": wall,
        "cpu_s_per_1000": total / max(got, 1) * 1000,
    }


def run() -> list[Figure]:
    """Measure 1, 2 and 4 gateways, streaming and draining, in rounds; return the CPU-per-reading
    figures against one gateway.

    Each round measures every mode and size in turn; a group's ratio is taken against the single
    gateway of its own round and mode, and the figures are the medians over the rounds (the
    machine is shared).
    """
    count = int(os.environ.get("SUITCASE_BENCH_GATEWAY_PACKS", "12000"))
    rounds = int(os.environ.get("SUITCASE_BENCH_GATEWAY_ROUNDS", "3"))
    packs = _packs(count)
    runs: list[dict[str, Any]] = []
    for round_ in range(rounds):
        for mode in MODES:
            for k in SIZES:
                with tempfile.TemporaryDirectory(prefix=f"bench-gw-{k}-") as folder:
                    result: dict[str, Any] = dict(measure(k, packs, Path(folder), mode))
                result["round"] = round_
                runs.append(result)
    summary = []
    for mode in MODES:
        ones = {o["round"]: o["cpu_s_per_1000"] for o in runs if o["gateways"] == 1 and o["mode"] == mode}
        for k in SIZES:
            mine = [r for r in runs if r["gateways"] == k and r["mode"] == mode]
            ratios = [r["cpu_s_per_1000"] / ones[r["round"]] for r in mine]
            summary.append(
                {
                    "mode": mode,
                    "gateways": k,
                    "cpu_s_per_1000_median": statistics.median(r["cpu_s_per_1000"] for r in mine),
                    "ratio_to_one_median": statistics.median(ratios),
                    "ratios": ratios,
                    "readings_per_batch_median": statistics.median(r["readings_per_batch"] for r in mine),
                }
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateways.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    line_chart(
        RESULTS / "gateways.svg",
        f"Gateway CPU per reading in a shared group, against 1 gateway (median of {rounds} rounds)",
        "gateways",
        "CPU per reading / 1 gateway's",
        {
            f"{mode} (median)": [
                (s["gateways"], s["ratio_to_one_median"]) for s in summary if s["mode"] == mode
            ]
            for mode in MODES
        },
        log_x=False,
    )
    one = {s["mode"]: s["cpu_s_per_1000_median"] for s in summary if s["gateways"] == 1}
    return [
        Figure(
            f"{s['gateways']} gateways in a group, {s['mode']}: CPU per reading (median of {rounds} rounds)",
            s["ratio_to_one_median"] * one[s["mode"]],  # so that .ratio is the median ratio
            f"1 gateway, {s['mode']}",
            one[s["mode"]],
            1000,
            "readings",
        )
        for s in summary
        if s["gateways"] > 1
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.ratio:.2f}x {figure.baseline}")
    print(json.dumps(json.loads((RESULTS / "gateways.json").read_text())["summary"], indent=2))
