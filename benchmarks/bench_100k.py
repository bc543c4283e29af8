"""Trying 100,000 devices at one reading a minute on this machine, to see where it stops and why.

Not part of ``make bench`` (``make bench-100k``): one Mosquitto (open-file limit raised), one
gateway, and the simulator's devices logging in anonymously with made-up ids (enrolling 100,000
through the server is measured to take hours on Mosquitto 2.0: README, "Sizing"), connecting at
``SUITCASE_BENCH_100K_RATE`` per second, each sending a pack of 3 readings a minute. Every 5 s it
notes the devices connected, the connect errors, readings acknowledged, and the memory and CPU of
the broker, the gateway and the simulator; it writes ``benchmarks/results/100k.json`` and
``100k.svg``. ``SUITCASE_BENCH_100K_SOURCES`` spreads the connections over that many loopback
source addresses (one address pair has ~28,000 ephemeral ports).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchmarks._svg import line_chart
from kits.wire import build_topic
from suitcase.broker import MosquittoBroker
from suitcase.simulate.device import Counters, Enrolled
from suitcase.simulate.fleet import FleetPlan, run_fleet
from suitcase.simulate.limits import raise_open_files

RESULTS = Path(__file__).parent / "results"


def _tree_stats(pid: int) -> tuple[float, float]:
    cpu = rss = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return cpu, rss / 2**20


def main() -> None:
    count = int(os.environ.get("SUITCASE_BENCH_100K", "100000"))
    rate = float(os.environ.get("SUITCASE_BENCH_100K_RATE", "1000"))
    sources = int(os.environ.get("SUITCASE_BENCH_100K_SOURCES", "1"))
    processes = int(os.environ.get("SUITCASE_BENCH_100K_PROCESSES", "4"))
    duration = float(os.environ.get("SUITCASE_BENCH_100K_DURATION", str(count / rate + 180)))
    raise_open_files(count + 1000)
    samples: list[dict[str, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-100k-") as folder,
        MosquittoBroker(Path(folder) / "mosquitto") as broker,
    ):
        assert broker.pid is not None
        env = dict(
            os.environ,
            SUITCASE_GATEWAY_STORE=str(Path(folder) / "store.db"),
            SUITCASE_GATEWAY_MQTT_PORT=str(broker.port),
            SUITCASE_GATEWAY_CLIENT_ID="bench-100k",
        )
        gateway = subprocess.Popen(
            [sys.executable, "-m", "suitcase", "gateway", "run", "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        devices = [
            Enrolled(org="bench", device=f"d{i}", host=broker.host, port=broker.port,
                     username=f"d{i}", password="x",
                     topics={k: build_topic("bench", f"d{i}", k) for k in ("telemetry", "status", "meta")},
                     sensors=[("bme280", ["temperature", "humidity", "pressure"])], interval_s=60.0,
                     source=f"127.0.0.{1 + i % sources}" if sources > 1 else None)
            for i in range(count)
        ]  # fmt: skip
        start = time.time() + 5
        plan = FleetPlan(start_at=start, end_at=start + duration, connect_rate=rate, seed=3)
        latest: list[Counters] = [Counters()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(5.0):
                broker_cpu, broker_rss = _tree_stats(broker.pid or 0)
                gw_cpu, gw_rss = _tree_stats(gateway.pid)
                sim_cpu, sim_rss = _tree_stats(os.getpid())
                c = latest[0]
                samples.append({
                    "t": time.time() - start, "connected": c.connected,
                    "connect_failures": c.connect_failures, "readings_acked": c.readings_acked,
                    "broker_rss_mb": broker_rss, "broker_cpu_s": broker_cpu,
                    "gateway_rss_mb": gw_rss, "gateway_cpu_s": gw_cpu, "simulator_rss_mb": sim_rss,
                    "simulator_cpu_s": sim_cpu, "load1": os.getloadavg()[0],
                })  # fmt: skip
                print(json.dumps(samples[-1]), flush=True)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        error = ""
        try:
            final = run_fleet(devices, plan, processes, lambda c: latest.__setitem__(0, c))
        except RuntimeError as exc:
            final, error = latest[0], str(exc)
        done.set()
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)
        log = (Path(folder) / "mosquitto" / "mosquitto.log").read_text(errors="replace")[-3000:]
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"count": count, "rate": rate, "sources": sources, "processes": processes, "error": error,
              "final": final.__dict__, "samples": samples, "broker_log_tail": log}  # fmt: skip
    (RESULTS / "100k.json").write_text(json.dumps(report, indent=2))
    line_chart(RESULTS / "100k.svg", f"{count:,} devices at 1 reading/min: connected over time", "seconds",
               "devices connected (thousands)",
               {"connected": [(s["t"], s["connected"] / 1000) for s in samples],
                "broker RSS (100 MB)": [(s["t"], s["broker_rss_mb"] / 100) for s in samples]},
               log_x=False)  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
