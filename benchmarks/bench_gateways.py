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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

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


def measure(gateways: int, packs: list[tuple[str, bytes]], folder: Path) -> dict[str, float]:
    """CPU seconds of ``gateways`` gateways per 1,000 readings, and the wall time of the drain."""
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
            before = _tree_cpu(process.pid, supervised)
            started = time.perf_counter()
            _publish(broker.host, broker.port, packs)
            expected = 6 * len(packs)
            with SqliteStore(store_path) as reader:
                deadline = time.monotonic() + 600
                while reader.count_readings() < expected and time.monotonic() < deadline:
                    time.sleep(0.25)
                got = reader.count_readings()
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
    """Measure 1, 2 and 4 gateways, in rounds; return the CPU-per-reading figures against one gateway.

    Each round measures 1, 2 and 4 in turn; a group's ratio is taken against the single gateway of
    its own round, and the figures are the medians over the rounds (the machine is shared).
    """
    count = int(os.environ.get("SUITCASE_BENCH_GATEWAY_PACKS", "20000"))
    rounds = int(os.environ.get("SUITCASE_BENCH_GATEWAY_ROUNDS", "3"))
    packs = _packs(count)
    runs: list[dict[str, float]] = []
    for round_ in range(rounds):
        for k in SIZES:
            with tempfile.TemporaryDirectory(prefix=f"bench-gw-{k}-") as folder:
                result = measure(k, packs, Path(folder))
            result["round"] = round_
            runs.append(result)
    summary = []
    for k in SIZES:
        mine = [r for r in runs if r["gateways"] == k]
        ones = {o["round"]: o["cpu_s_per_1000"] for o in runs if o["gateways"] == 1}
        ratios = [r["cpu_s_per_1000"] / ones[r["round"]] for r in mine]
        summary.append(
            {
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
        "Gateway CPU per reading in a shared group, against 1 gateway (median of rounds)",
        "gateways",
        "CPU per reading / 1 gateway's",
        {
            "median": [(s["gateways"], s["ratio_to_one_median"]) for s in summary],
            **{f"round {i + 1}": [(s["gateways"], s["ratios"][i]) for s in summary] for i in range(rounds)},
        },
        log_x=False,
    )
    one = summary[0]
    return [
        Figure(
            f"{s['gateways']} gateways in a group: CPU per reading (median of {rounds} rounds)",
            s["ratio_to_one_median"] * one["cpu_s_per_1000_median"],  # so that .ratio is the median ratio
            "1 gateway",
            one["cpu_s_per_1000_median"],
            1000,
            "readings",
        )
        for s in summary[1:]
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.ratio:.2f}x {figure.baseline}")
    print(json.dumps(json.loads((RESULTS / "gateways.json").read_text())["summary"], indent=2))
