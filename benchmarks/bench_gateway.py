"""Gateway ingest: drain a Mosquitto backlog of N packs of 6 readings, against a bare paho subscriber.

Every consumer's persistent session is registered, then N packs are queued in Mosquitto (loaded
with deploy/mosquitto/) while all are offline, then each consumer process drains its own copy:

- (a) baseline: a minimal paho QoS 1 subscriber that only counts and acks (``mosquitto_sub`` is
  reported for reference);
- (b) the gateway into the sqlite sink; (c) the gateway into a real influxd.

Reported: messages/s and readings/s, ratio = time / baseline time (so (b)/(a) as a throughput
ratio is 1/ratio), peak RSS of the consumer (for (b) its store-writer child included),
readings landed == sent. The gateway runs with its shipped batch settings
(``SUITCASE_GATEWAY_BATCH_MESSAGES`` overrides them, to explore). Then the live-feed
latency (publish to queryable) at 1,000 readings/s through the sqlite sink, p50 and p99.
``SUITCASE_BENCH_N`` sets N (default 200,000; ``make bench`` users may lower it);
``SUITCASE_BENCH_WORKERS`` runs (b) and (c) as that many gateway processes sharing the load
through ``$share`` (default 1: on 2 cores a second process only competes with the broker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._timing import Figure

__all__ = ["run"]

ORG = "bench"
DEVICES = 50
NOW = time.time()
TOPIC = "suitcase/v1/+/+/telemetry"


def _packs(n: int) -> list[tuple[str, bytes]]:
    from kits.wire import Record, build_topic, encode_pack

    out = []
    quantities = (
        ("bme280", "temperature", 20.0),
        ("bme280", "humidity", 40.0),
        ("bme280", "pressure", 1000.0),
        ("scd40", "co2", 400.0),
        ("scd40", "temperature", 21.0),
        ("scd40", "humidity", 41.0),
    )
    base = NOW - 2 * n // DEVICES - 10
    for i in range(n):
        device = f"pi-{i % DEVICES}"
        t = base + (i // DEVICES) * 1.0
        recs = [Record(ORG, device, s, q, v + (i % 97) / 10, t) for s, q, v in quantities]
        out.append((build_topic(ORG, device, "telemetry"), encode_pack(recs)))
    return out


def _publish(port: int, packs: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for start in range(0, len(packs), 50_000):  # paho's message ids wrap at 65,535
        infos = [client.publish(topic, payload, qos=1) for topic, payload in packs[start : start + 50_000]]
        for info in infos:
            info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _register(port: int, client_id: str, workers: int = 1) -> None:
    """Register the persistent session(s) of a consumer, so Mosquitto queues the backlog for them.

    With several workers, each worker's session joins the shared subscription ``$share/{client_id}``
    and Mosquitto queues a share of the backlog for each.
    """
    if workers > 1:
        for i in range(workers):
            _subscribe(port, _worker_id(client_id, i, workers), f"$share/{client_id}/{TOPIC}")
    else:
        _subscribe(port, client_id, TOPIC)


def _subscribe(port: int, client_id: str, topic: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    done.wait(10)
    client.disconnect()
    client.loop_stop()


def _rss_kb(with_children: bool = False) -> int:
    """Peak RSS of this process, plus the largest child's (the sqlite sink's writer) if asked."""
    peak = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    if with_children:
        import resource

        peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return peak


# ---------------------------------------------------------------- consumer processes


def _consume_paho(port: int, client_id: str, n: int) -> dict[str, Any]:
    count = 0
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1  # paho acks QoS 1 after on_message returns
        if count >= n:
            done.set()

    client.on_message = on_message
    started = time.perf_counter()
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(600)
    seconds = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return {"seconds": seconds, "messages": count, "landed": count * 6}


def _gateway_worker(
    port: int,
    client_id: str,
    group: str | None,
    sink_url: str,
    workdir: str,
    go: Any,
    ready: Any,
    stop: Any,
    acked: Any,
    rss: Any,
    cpu: Any,
) -> None:
    """One gateway process of the pool: start on ``go``, publish its acked count, stop on ``stop``.

    ``cpu`` gets the CPU seconds of this process and of its children (the sqlite sink's writer).
    """
    import resource

    from gateway.consumer import Gateway
    from gateway.settings import load_settings
    from gateway.sinks import open_sink
    from gateway.store import SqliteStore

    settings = load_settings()  # the shipped batch defaults, or SUITCASE_GATEWAY_* to explore
    store = SqliteStore(Path(workdir) / f"{client_id}-dead.db")
    gw = Gateway(
        store,
        host="127.0.0.1",
        port=port,
        client_id=client_id,
        group=group,
        batch_messages=settings.batch_messages,
        batch_age_s=settings.batch_age_s,
        sinks=[open_sink(sink_url)],
    )

    def cpu_s(who: int) -> float:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    ready.release()
    go.wait()
    before = cpu_s(resource.RUSAGE_SELF)
    gw.start()
    while not stop.wait(0.01):
        acked.value = gw.stats.acked
    gw.stop()
    acked.value = gw.stats.acked
    # The writer child has exited with gw.stop(): its peak RSS and CPU time are on record now.
    rss.value = _rss_kb(with_children=True)
    cpu[0], cpu[1] = cpu_s(resource.RUSAGE_SELF) - before, cpu_s(resource.RUSAGE_CHILDREN)
    store.close()


def _consume_gateway(
    port: int, client_id: str, n: int, sink_url: str, workdir: str, workers: int = 1
) -> dict[str, Any]:
    """Drain with ``workers`` gateway processes; with more than one, they share ``$share/{client_id}``.

    Each worker's session (``{client_id}-{i}``) was registered before the backlog was queued, so
    Mosquitto queued a share of it for each. Timing starts when every worker is ready to connect.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    go, stop, ready = ctx.Event(), ctx.Event(), ctx.Semaphore(0)
    counters = [ctx.Value("q", 0) for _ in range(workers)]
    rss = [ctx.Value("q", 0) for _ in range(workers)]
    cpu = [ctx.Array("d", 2) for _ in range(workers)]
    group = client_id if workers > 1 else None
    procs = [
        ctx.Process(
            target=_gateway_worker,
            args=(port, _worker_id(client_id, i, workers), group, sink_url, workdir, go, ready, stop, *out),
        )
        for i, out in enumerate(zip(counters, rss, cpu, strict=True))
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    while sum(c.value for c in counters) < n:
        dead = [proc.exitcode for proc in procs if not proc.is_alive()]
        if dead:
            stop.set()
            raise RuntimeError(f"a gateway worker exited with {dead[0]} before the backlog was drained")
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    stop.set()
    for proc in procs:
        proc.join(60)
    return {
        "seconds": seconds,
        "workers": workers,
        "messages": sum(c.value for c in counters),
        "rss_kb": sum(r.value for r in rss),
        "cpu_s_gateway": sum(u[0] for u in cpu),
        "cpu_s_writer": sum(u[1] for u in cpu),
    }


def _worker_id(client_id: str, i: int, workers: int) -> str:
    return client_id if workers == 1 else f"{client_id}-{i}"


def _consumer_main(argv: list[str]) -> None:
    kind, port, client_id, n, sink_url, workdir, workers = argv
    if kind == "paho":
        result = _consume_paho(int(port), client_id, int(n))
        result["rss_kb"] = _rss_kb()
    else:
        result = _consume_gateway(int(port), client_id, int(n), sink_url, workdir, int(workers))
    print(json.dumps(result))


def _drain(
    kind: str, port: int, client_id: str, n: int, sink_url: str = "", workdir: str = "", workers: int = 1
) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_gateway",
            kind,
            str(port),
            client_id,
            str(n),
            sink_url,
            workdir,
            str(workers),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _mosquitto_sub(port: int, client_id: str, n: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["mosquitto_sub", "-p", str(port), "-i", client_id, "-c", "-q", "1", "-t", TOPIC, "-C", str(n)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


# ---------------------------------------------------------------- latency


def _latency(port: int, workdir: Path, seconds: float = 10.0, rate: float = 1000.0) -> tuple[float, float]:
    """Publish ``rate`` readings/s live; return p50, p99 of publish -> queryable in the sqlite store."""
    from gateway.consumer import Gateway
    from gateway.store import SqliteStore
    from kits.wire import Record, build_topic, encode_pack

    store = SqliteStore(workdir / "latency.db")
    reader = SqliteStore(workdir / "latency.db")
    gw = Gateway(store, host="127.0.0.1", port=port, client_id="bench-latency")
    gw.start()
    gw.wait_subscribed()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-latency-pub")
    client.connect("127.0.0.1", port)
    client.loop_start()
    packs = int(seconds * rate / 6)
    sent: list[float] = []
    landed: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            count = reader.count_readings() // 6
            now = time.perf_counter()
            while len(landed) < count:
                landed.append(now)
            time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    interval = 6 / rate
    start = time.perf_counter()
    for i in range(packs):
        due = start + i * interval
        time.sleep(max(due - time.perf_counter(), 0))
        t = time.time()
        recs = [Record(ORG, "pi-live", "bme280", q, 20.0, t) for q in ("temperature", "humidity", "pressure")]
        recs += [Record(ORG, "pi-live", "scd40", q, 20.0, t) for q in ("co2", "temperature", "humidity")]
        sent.append(time.perf_counter())
        client.publish(build_topic(ORG, "pi-live", "telemetry"), encode_pack(recs), qos=1)
    deadline = time.monotonic() + 30
    while len(landed) < packs and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    poller.join()
    client.disconnect()
    client.loop_stop()
    gw.stop()
    store.close()
    reader.close()
    lat = sorted(b - a for a, b in zip(sent, landed, strict=False))
    return lat[len(lat) // 2], lat[min(int(len(lat) * 0.99), len(lat) - 1)]


# ---------------------------------------------------------------- the benchmark


def run(n: int | None = None) -> list[Figure]:
    from suitcase.broker import MosquittoBroker

    n = n or int(os.environ.get("SUITCASE_BENCH_N", "200000"))
    workers = int(os.environ.get("SUITCASE_BENCH_WORKERS", "1"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o777)
        broker = MosquittoBroker(work / "mosquitto")
        broker.start()
        influx = _start_influxd(work / "influxd")
        try:
            ids = {k: f"bench-{k}-{uuid.uuid4().hex[:6]}" for k in ("paho", "sub", "sqlite", "influx")}
            for kind, cid in ids.items():
                _register(broker.port, cid, workers if kind in ("sqlite", "influx") else 1)
            packs = _packs(n)
            t0 = time.perf_counter()
            _publish(broker.port, packs)
            publish_s = time.perf_counter() - t0
            del packs
            a = _drain("paho", broker.port, ids["paho"], n)
            sub_s = _mosquitto_sub(broker.port, ids["sub"], n)
            b = _drain(
                "gateway", broker.port, ids["sqlite"], n, f"sqlite:///{work / 'b.db'}", str(work), workers
            )
            from gateway.store import SqliteStore

            with SqliteStore(work / "b.db") as s:
                b["landed"] = s.count_readings()
            c: dict[str, Any] = {}
            if influx is not None:
                c = _drain("gateway", broker.port, ids["influx"], n, influx.sink_url, str(work), workers)
                c["landed"] = influx.count(f"suitcase_{ORG}")
            p50, p99 = _latency(broker.port, work)
        finally:
            broker.stop()
            if influx is not None:
                influx.stop()
    report = {
        "n_packs": n,
        "readings_sent": 6 * n,
        "publish_msgs_per_s": n / publish_s,
        "a_paho": a,
        "mosquitto_sub_seconds": sub_s,
        "b_gateway_sqlite": b,
        "c_gateway_influxdb1": c,
        "ratio_b_over_a_throughput": a["seconds"] / b["seconds"],
        "ratio_c_over_a_throughput": a["seconds"] / c["seconds"] if c else None,
        "latency_p50_s": p50,
        "latency_p99_s": p99,
    }
    Path(".suitcase").mkdir(exist_ok=True)
    Path(".suitcase/bench_gateway.json").write_text(json.dumps(report, indent=2))
    figures = [
        Figure("drain: mosquitto_sub (ref)", sub_s, "paho count+ack", a["seconds"], 6 * n, "readings"),
        Figure(
            "drain: gateway -> sqlite", b["seconds"], "paho count+ack", a["seconds"], b["landed"], "readings"
        ),
    ]
    if c:
        figures.append(
            Figure(
                "drain: gateway -> influxd 1.x",
                c["seconds"],
                "paho count+ack",
                a["seconds"],
                c["landed"],
                "readings",
            )
        )
    for name, d in (("sqlite", b), ("influxd", c)):
        if d and d["landed"] != 6 * n:
            raise AssertionError(f"gateway -> {name}: {d['landed']} readings landed of {6 * n} sent")
    return figures


def _start_influxd(root: Path) -> Any:
    try:
        from tests.services.influxdb import InfluxD, find_influxd
    except ImportError:
        return None
    if find_influxd() is None:
        return None
    server = InfluxD(root)
    server.start()
    return server


if __name__ == "__main__":
    _consumer_main(sys.argv[1:])
