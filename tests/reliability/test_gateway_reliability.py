"""Reliability of the gateway against real Mosquitto and real influxd: nothing lost, nothing doubled.

Each test has its own broker (and influxd where it stops one), so a restart disturbs no other test.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.consumer import Gateway
from gateway.sinks import open_sink
from gateway.sinks.influxdb1 import InfluxDB1Sink
from gateway.sinks.sqlite import SqliteSink
from gateway.store import SqliteStore
from kits.wire import decode_pack, parse_topic
from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from tests.gateway.gwtools import NOW, publish_all, six_pack
from tests.reliability.faults import record, stored_rows, tally
from tests.services import require_service
from tests.services.influxdb import InfluxD
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

ORG = "rel-city"
DB = "suitcase_rel_city"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private Mosquitto with the project's config (tests restart it)."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto mosquitto-clients")
    b = MosquittoBroker(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


def packs(n: int, devices: int = 10, org: str = ORG) -> list[tuple[str, bytes]]:
    return [six_pack(org, f"dev-{i % devices}", i // devices) for i in range(n)]


def assert_exactly_once(store: SqliteStore, n_packs: int, devices: int = 10) -> None:
    assert store.count_readings() == 6 * n_packs
    for d in range(devices):
        got = store.readings(ORG, f"dev-{d}", 0, 2e9, limit=10**7)
        assert (
            len(got)
            == len({(r.sensor, r.quantity, r.time) for r in got})
            == 6 * len(range(d, n_packs, devices))
        )


def _who(topic: str) -> dict[str, str]:
    parsed = parse_topic(topic)
    return {"org": parsed.org, "device": parsed.device}


def gateway(store: SqliteStore, broker: MosquittoBroker, **kw: object) -> Gateway:
    options: dict[str, object] = {
        "client_id": f"gw-{uuid.uuid4().hex[:8]}",
        "batch_messages": 200,
        "batch_age_s": 0.05,
        "clock": lambda: NOW,
        "mqtt_version": "5",
    }
    options.update(kw)
    return Gateway(store, host=broker.host, port=broker.port, **options)  # type: ignore[arg-type]


@pytest.mark.influxdb
def test_kill_9_mid_stream_of_100k_readings_loses_and_doubles_nothing(
    broker: MosquittoBroker, influxd: InfluxD, tmp_path: Path
) -> None:
    """Test that kill -9 of a gateway process mid-stream, then a restart, lands 100,002 readings once.

    The gateway process writes to the embedded store and to a real influxd; each ends up with every
    reading exactly once (the broker redelivers the unacked; the sinks overwrite twins).
    """
    n = 16_667  # packs of 6 readings: 100,002 readings
    store_path = tmp_path / "store.db"
    cid = f"gw-kill-{uuid.uuid4().hex[:6]}"
    metrics = free_port()
    cmd = [
        sys.executable, "-m", "suitcase", "gateway", "run", "--quiet",
        "--store", str(store_path),
        "--sink", f"sqlite:///{store_path}",
        "--sink", influxd.sink_url,
        "--mqtt-port", str(broker.port), "--client-id", cid, "--mqtt-version", "5",
        "--batch-messages", "500", "--metrics-port", str(metrics),
    ]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    proc = start()
    feed = threading.Thread(target=publish_all, args=(broker.host, broker.port, packs(n)))
    # The gateway's session and subscription in place before the feed (was a 1 s sleep after the
    # store file appeared: on a loaded machine the first packs had no session to queue for).
    wait_until(lambda: _subscribed(metrics), timeout=60, what="the gateway subscribed")
    feed.start()
    reader = SqliteStore(store_path)
    wait_until(lambda: reader.count_readings() > 30_000, timeout=60, what="a third landed")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = reader.count_readings()
    assert killed_at < 6 * n, "the kill came too late to test anything"
    proc = start()
    back = time.monotonic()
    try:
        feed.join(120)
        wait_until(lambda: reader.count_readings() >= 6 * n, timeout=120, what="all 100,002 readings")
        recovery = time.monotonic() - back
        time.sleep(0.5)
        assert_exactly_once(reader, n)
        wait_until(lambda: influxd.count(DB) >= 6 * n, timeout=30, what="all readings in influxd")
        assert influxd.count(DB) == 6 * n
        sent = [r for topic, payload in packs(n) for r in decode_pack(payload, now=NOW, **_who(topic))]
        stored = stored_rows(reader, {(r.org, r.device) for r in sent}, 0, 2e9)
        record(
            tally(
                "Gateway killed (-9) mid-stream",
                sent,
                stored,
                recovery_s=recovery,
                conditions=f"{6 * n:,} readings from 10 devices; killed at {killed_at:,} stored, restarted; "
                "embedded store and influxd both checked",
                order=10,
                influxd=influxd.count(DB),
            )
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        reader.close()


def test_influxdb_stopped_then_restarted_loses_nothing_and_holds_bounded_memory(
    broker: MosquittoBroker, influxd_factory: Callable[[], InfluxD], tmp_path: Path
) -> None:
    """Test that while influxd is down nothing is acked, the held window stays bounded, and all lands after.

    Compressed: a 4 s outage under a steady feed; the broker queues what the gateway does not take.
    """
    server = influxd_factory()
    store = SqliteStore(tmp_path / "dead.db")
    sink = InfluxDB1Sink(server.host, server.port, timeout=2)
    gw = gateway(store, broker, sinks=[sink], batch_messages=100)
    n = 3000
    with gw:
        gw.wait_subscribed(60)
        publish_all(broker.host, broker.port, packs(1000))
        wait_until(lambda: gw.stats.acked == 1000, timeout=30, what="first 1000 acked")
        server.stop()
        feed = threading.Thread(target=publish_all, args=(broker.host, broker.port, packs(n)[1000:]))
        feed.start()
        wait_until(lambda: gw.stats.store_failures >= 3, timeout=60, what="failing writes")
        acked = gw.stats.acked
        held = []
        for _ in range(20):
            time.sleep(0.2)
            held.append(gw.stats.received - gw.stats.acked)
        assert gw.stats.acked == acked, "acked while the sink was down"
        assert max(held) <= gw.receive_maximum + 2 * gw.batch_messages, held
        assert not gw.sinks_up[sink.name]
        server.start()
        feed.join(60)
        wait_until(lambda: gw.stats.acked >= n, timeout=60, what="everything acked after the restart")
    assert server.count(DB) == 6 * n
    store.close()


def _subscribed(port: int) -> bool:
    """Whether the gateway serving /metrics on ``port`` says it is subscribed to the broker."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return False
    return "\nsuitcase_gateway_connected 1.0" in f"\n{text}"


class _Flaky(BaseHTTPRequestHandler):
    """Forwards to a real influxd, or answers 500, or stalls, as ``mode`` says."""

    mode = "ok"
    target = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "stall":
            time.sleep(1.5)
        if self.mode in ("500", "stall"):
            self.send_response(500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        request = urllib.request.Request(self.target + self.path, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.influxdb
def test_sink_answering_500_timing_out_refusing_loses_nothing(
    broker: MosquittoBroker, influxd: InfluxD, tmp_path: Path
) -> None:
    """Test that a sink answering HTTP 500, then timing out, then refusing connections loses nothing.

    Each phase: messages arrive, writes fail with a clear reason, nothing is acked; once the sink
    is healthy again every reading lands once.
    """
    handler = type("Handler", (_Flaky,), {"target": influxd.url})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = proxy.server_address[1]
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    store = SqliteStore(tmp_path / "dead.db")
    sink = open_sink(f"influxdb1://127.0.0.1:{port}?timeout=0.5")
    gw = gateway(store, broker, sinks=[sink], batch_messages=50)
    batches = iter([packs(300)[i : i + 75] for i in range(0, 300, 75)])
    with gw:
        gw.wait_subscribed(60)
        publish_all(broker.host, broker.port, next(batches))
        wait_until(lambda: gw.stats.acked == 75, what="healthy phase acked")
        sent = 75
        for mode in ("500", "stall", "refused"):
            if mode == "refused":
                proxy.shutdown()
                proxy.server_close()
            handler.mode = mode
            failures = gw.metrics.failures.labels(sink.name)._value.get()
            acked = gw.stats.acked
            publish_all(broker.host, broker.port, next(batches))
            sent += 75
            wait_until(
                lambda f=failures: gw.metrics.failures.labels(sink.name)._value.get() >= f + 2,
                timeout=60,
                what=f"failing writes ({mode})",
            )
            assert gw.stats.acked == acked, f"acked during {mode}"
            if mode == "refused":
                proxy = ThreadingHTTPServer(("127.0.0.1", port), handler)
                threading.Thread(target=proxy.serve_forever, daemon=True).start()
            handler.mode = "ok"
            wait_until(lambda s=sent: gw.stats.acked >= s, timeout=30, what=f"recovery after {mode}")
    proxy.shutdown()
    proxy.server_close()
    assert influxd.count(DB) == 6 * 300
    store.close()


def test_broker_restart_loses_nothing(broker: MosquittoBroker, tmp_path: Path) -> None:
    """Test that a graceful Mosquitto restart mid-stream loses nothing: the gateway reconnects, resumes."""
    store = SqliteStore(tmp_path / "s.db")
    all_packs = packs(4000)
    with gateway(store, broker) as gw:
        gw.wait_subscribed(60)
        publish_all(broker.host, broker.port, all_packs[:2000])
        broker.stop()
        broker.start()  # same port, same persistence file
        publish_all(broker.host, broker.port, all_packs[2000:])
        wait_until(lambda: store.count_readings() >= 6 * 4000, timeout=60, what="every reading")
        assert gw.stats.connects >= 2
    assert_exactly_once(store, 4000)
    store.close()


def test_store_writer_child_killed_mid_stream_loses_and_doubles_nothing(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Test that kill -9 of the sqlite sink's writer process, three times mid-stream, loses nothing.

    The write in flight fails, the gateway keeps the batch unacked and retries it; the next write
    starts a fresh child; the store ends up with every reading once and passes its integrity check.
    """
    sink = open_sink(f"sqlite:///{tmp_path / 'w.db'}")
    assert isinstance(sink, SqliteSink) and sink._writer is not None
    writer = sink._writer
    letters = SqliteStore(tmp_path / "letters.db")
    reader = SqliteStore(tmp_path / "w.db")
    n = 12_000
    killed: list[int] = []
    with gateway(letters, broker, sinks=[sink]) as gw:
        gw.wait_subscribed(60)
        feed = threading.Thread(target=publish_all, args=(broker.host, broker.port, packs(n)))
        feed.start()
        for target in (10_000, 25_000, 45_000):
            wait_until(lambda t=target: reader.count_readings() >= t, timeout=60, what=f"{target} readings")  # type: ignore[misc]
            pid = writer.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        feed.join(120)
        wait_until(lambda: reader.count_readings() >= 6 * n, timeout=60, what="every reading")
        # the acks follow the writes: under load the last batch's lag behind the store's count
        wait_until(lambda: gw.stats.acked >= n, timeout=30, what="every message acked")
    assert len(killed) == 3 and len(set(killed)) == 3, killed
    assert_exactly_once(reader, n)
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reader.close()
    letters.close()


def test_two_gateways_share_the_load_each_message_once(broker: MosquittoBroker, tmp_path: Path) -> None:
    """Test that two gateways in one $share group each take part of the load, each message exactly once."""
    store_a, store_b = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    n = 6000
    with gateway(store_a, broker, group="pool") as a, gateway(store_b, broker, group="pool") as b:
        a.wait_subscribed(60)
        b.wait_subscribed(60)
        publish_all(broker.host, broker.port, packs(n))
        wait_until(lambda: a.stats.acked + b.stats.acked >= n, timeout=60, what="every message acked")
        time.sleep(0.3)
        assert a.stats.received + b.stats.received == n  # once each: no message went to both
        assert min(a.stats.received, b.stats.received) > n // 10
    assert_exactly_once(store_a, n)
    store_a.close()
    store_b.close()


def test_a_gateway_that_leaves_its_group_under_load_hands_its_share_over(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Test that when one gateway of a $share group stops under load, nothing is lost and nothing waits
    for it: its share (queued in its session, which Mosquitto keeps routing to) is drained by the
    other member once its Last Will says down; when it returns it takes part again.
    """
    store = SqliteStore(tmp_path / "s.db")
    n = 6000
    all_packs = packs(n)
    b_id = f"gw-b-{uuid.uuid4().hex[:6]}"
    with gateway(store, broker, group="pool", client_id=f"gw-a-{uuid.uuid4().hex[:6]}") as a:
        b = gateway(store, broker, group="pool", client_id=b_id)
        b.start()
        b.wait_subscribed(60)
        a.wait_subscribed(60)
        publish_all(broker.host, broker.port, all_packs[:2000])
        b.stop()  # gone: its session stays in the group, and its will says down after 5 s
        publish_all(broker.host, broker.port, all_packs[2000:5000])
        wait_until(lambda: store.count_readings() >= 6 * 5000, timeout=60, what="b's share, through a")
        assert a.members is not None
        wait_until(lambda: b_id not in a.members.records, timeout=30, what="b's record cleared")
        b = gateway(store, broker, group="pool", client_id=b_id)
        with b:
            b.wait_subscribed(60)
            publish_all(broker.host, broker.port, all_packs[5000:])
            wait_until(lambda: store.count_readings() >= 6 * n, timeout=60, what="every reading")
            assert b.stats.received > 0  # back in the group
    assert_exactly_once(store, n)
    store.close()


def test_supervised_workers_share_the_load(broker: MosquittoBroker, tmp_path: Path) -> None:
    """Test that `gateway run --workers 2` runs two processes that together land every reading once."""
    store_path = tmp_path / "s.db"
    env = dict(
        os.environ,
        SUITCASE_GATEWAY_STORE=str(store_path),
        SUITCASE_GATEWAY_MQTT_PORT=str(broker.port),
        SUITCASE_GATEWAY_CLIENT_ID=f"gw-w-{uuid.uuid4().hex[:6]}",
        SUITCASE_GATEWAY_MQTT_VERSION="5",
    )
    cmd = [sys.executable, "-m", "suitcase", "gateway", "run", "--workers", "2", "--group", "pool"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(store_path.exists, timeout=60, what="the store file")
        reader = SqliteStore(store_path)
        all_packs = packs(3000)

        def first_pack_landed() -> bool:
            # Until a worker has subscribed, the group has no session to queue for: the first
            # pack is sent again (the store overwrites its twin) until one worker wrote it.
            publish_all(broker.host, broker.port, all_packs[:1])
            time.sleep(0.2)
            return reader.count_readings() >= 6

        wait_until(first_pack_landed, timeout=60, what="a worker subscribed")
        publish_all(broker.host, broker.port, all_packs)
        wait_until(lambda: reader.count_readings() >= 18_000, timeout=60, what="every reading")
        assert_exactly_once(reader, 3000)
        reader.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
