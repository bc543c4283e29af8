"""Tests of gateway/consumer.py against real brokers: the embedded one (amqtt) and Mosquitto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from gateway.consumer import Gateway, GatewayError
from gateway.dead_letters import PAYLOAD_LIMIT
from kits.wire import Record, build_topic, encode_pack
from suitcase.broker import EmbeddedBroker, MosquittoBroker, free_port
from tests.gateway.gwtools import NOW, FlakyStore, Publisher
from tests.services.influxdb import InfluxD
from tests.waiting import wait_until

ORG = "aarhus"


def pack(device: str, index: int) -> tuple[str, bytes]:
    """Return the topic and payload of a valid two-reading pack, distinct per ``index``."""
    t = NOW - 10_000 + index
    records = [
        Record(ORG, device, "bme280", "temperature", 20.0 + index / 100, t),
        Record(ORG, device, "bme280", "humidity", 40.0 + index / 100, t),
    ]
    return build_topic(ORG, device, "telemetry"), encode_pack(records)


def gateway(
    store: FlakyStore, broker: EmbeddedBroker | MosquittoBroker, client_id: str, **kw: object
) -> Gateway:
    options: dict[str, object] = {"batch_messages": 10, "batch_age_s": 0.05, "clock": lambda: NOW}
    options.update(kw)
    return Gateway(store, host=broker.host, port=broker.port, client_id=client_id, **options)  # type: ignore[arg-type]


@pytest.fixture
def publisher(embedded_broker: EmbeddedBroker) -> Iterator[Publisher]:
    pub = Publisher(embedded_broker.host, embedded_broker.port)
    yield pub
    pub.close()


def test_valid_packs_land_and_are_acked(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str
) -> None:
    """Test that every reading of valid packs from several devices lands once and each message is acked."""
    with gateway(store, embedded_broker, client_id) as gw:
        gw.wait_subscribed(60)
        for i in range(30):
            publisher.publish(*pack(f"dev-{i % 3}", i))
        wait_until(lambda: gw.stats.acked == 30, what="30 acks")
        stats = gw.stats
    assert store.count_readings() == 60
    assert (stats.received, stats.written, stats.dead_lettered) == (30, 60, 0)
    assert stats.batches >= 3
    got = store.readings(ORG, "dev-1", 0, 2e9, quantity="temperature")
    assert [r.value for r in got] == [20.0 + i / 100 for i in range(1, 30, 3)]
    assert {d.device: d.readings for d in store.devices()} == {"dev-0": 20, "dev-1": 20, "dev-2": 20}


def test_a_batch_is_acked_only_after_its_write_returns(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str
) -> None:
    """Test that while the store's write is blocked, nothing is acked; once it returns, all is."""
    store.gate.clear()
    with gateway(store, embedded_broker, client_id) as gw:
        gw.wait_subscribed(60)
        for i in range(5):
            publisher.publish(*pack("dev-a", i))
        wait_until(lambda: gw.stats.received == 5, what="5 messages received")
        time.sleep(0.3)  # several batch ages: the worker is stuck inside write()
        assert gw.stats.acked == 0
        assert store.count_readings() == 0
        store.gate.set()
        wait_until(lambda: gw.stats.acked == 5, what="5 acks")
        assert store.count_readings() == 10


BAD = {
    "not_json": (build_topic(ORG, "dev-a", "telemetry"), b"{not json"),
    "device_mismatch": (pack("dev-b", 0)[0].replace("dev-b", "dev-a"), pack("dev-b", 0)[1]),
    "unknown_unit": (
        build_topic(ORG, "dev-a", "telemetry"),
        json.dumps(
            [{"bn": "urn:dev:suitcase:dev-a:", "bt": NOW, "n": "bme280/temperature", "u": "degF", "v": 70}]
        ).encode(),
    ),
    "bad_value": (
        build_topic(ORG, "dev-a", "telemetry"),
        b'[{"bn": "urn:dev:suitcase:dev-a:", "bt": 1749999000, '
        b'"n": "bme280/temperature", "u": "Cel", "v": NaN}]',
    ),
    "bad_time": (
        build_topic(ORG, "dev-a", "telemetry"),
        json.dumps(
            [
                {
                    "bn": "urn:dev:suitcase:dev-a:",
                    "bt": NOW + 3600,
                    "n": "bme280/temperature",
                    "u": "Cel",
                    "v": 20,
                }
            ]
        ).encode(),
    ),
    "oversize": (build_topic(ORG, "dev-a", "telemetry"), b"[" + b" " * 70_000 + b"]"),
    "bad_topic": ("suitcase/v1/Not_A_Slug/dev-a/telemetry", pack("dev-a", 0)[1]),
}


def test_each_bad_payload_kind_is_dead_lettered_with_its_code(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str
) -> None:
    """Test that each kind of bad message lands in the dead letters with its code, raw, and is acked.

    Valid packs around them still land: one bad message never blocks the others.
    """
    with gateway(store, embedded_broker, client_id) as gw:
        gw.wait_subscribed(60)
        publisher.publish(*pack("dev-a", 1))
        for topic, payload in BAD.values():
            publisher.publish(topic, payload)
        publisher.publish(*pack("dev-a", 2))
        wait_until(lambda: gw.stats.acked == len(BAD) + 2, what="every message acked")
        stats = gw.stats
    letters = store.dead_letters()
    # Payloads are kept up to the dead-letter limit, the full size in the reason.
    kept = {(t, p[:PAYLOAD_LIMIT]): code for code, (t, p) in BAD.items()}
    assert {(d.topic, d.payload): d.code for d in letters} == kept
    assert all(d.received_at == NOW and d.reason for d in letters)
    (oversize,) = [d for d in letters if d.code == "oversize"]
    assert f"[payload of {len(BAD['oversize'][1])} bytes, first {PAYLOAD_LIMIT} kept]" in oversize.reason
    assert stats.dead_lettered == len(BAD)
    assert store.count_readings() == 4


def test_store_failure_then_recovery_loses_nothing(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str
) -> None:
    """Test that while the store fails nothing is acked or dropped, and once it returns everything lands."""
    with gateway(store, embedded_broker, client_id) as gw:
        gw.wait_subscribed(60)
        publisher.publish(*pack("dev-a", 0))
        wait_until(lambda: gw.stats.acked == 1, what="first ack")
        store.failing = True
        for i in range(1, 41):
            publisher.publish(*pack("dev-a", i))
        wait_until(lambda: gw.stats.store_failures >= 3, what="retries of the failing store")
        assert gw.stats.acked == 1
        store.failing = False
        wait_until(lambda: gw.stats.acked == 41, timeout=30, what="all 41 acked after recovery")
    assert store.count_readings() == 82
    times = [r.time for r in store.readings(ORG, "dev-a", 0, 2e9, quantity="humidity")]
    assert times == [NOW - 10_000 + i for i in range(41)]


def test_gateway_refuses_bad_options_and_unreachable_broker(store: FlakyStore) -> None:
    """Test that bad batch options and an unreachable broker raise GatewayError with a clear message."""
    with pytest.raises(GatewayError, match="batch_messages"):
        Gateway(store, host="127.0.0.1", port=1, batch_messages=0)
    with pytest.raises(GatewayError, match="batch_age_s"):
        Gateway(store, host="127.0.0.1", port=1, batch_age_s=0)
    gw = Gateway(store, host="127.0.0.1", port=free_port())
    with pytest.raises(GatewayError, match="cannot reach the MQTT broker"):
        gw.start()
    gw.stop()  # stopping a gateway that never started is harmless


def _crash_and_resume(broker: EmbeddedBroker | MosquittoBroker, store: FlakyStore, client_id: str) -> None:
    """Publish through a gateway that stops mid-stream unacked, then resume with the same client id."""
    pub = Publisher(broker.host, broker.port)
    try:
        first = gateway(store, broker, client_id)
        first.start()
        first.wait_subscribed(60)
        for i in range(20):
            pub.publish(*pack("dev-a", i))
        wait_until(lambda: store.count_readings() == 40, what="first 20 packs written")
        store.failing = True
        for i in range(20, 50):
            pub.publish(*pack("dev-a", i))
        # The gateway holds at most its window (2 batches: 20 messages) plus one socket read unacked,
        # then reads no further: how many of the 30 it received depends on how they were read.
        wait_until(lambda: first.stats.received >= 40 and first.stats.store_failures >= 1, what="failures")
        first.stop()  # the crash: 20 to 30 messages received, none of them acked
        assert first.stats.acked == 20
        for i in range(50, 80):  # published while no gateway runs: queued in the session
            pub.publish(*pack("dev-a", i))
        store.failing = False
        with gateway(store, broker, client_id) as second:
            wait_until(lambda: store.count_readings() == 160, timeout=60, what="all 80 packs written")
            wait_until(lambda: second.stats.acked >= 60, what="the 60 redelivered/queued acked")
        readings = store.readings(ORG, "dev-a", 0, 2e9)
        assert len(readings) == 160
        assert len({(r.sensor, r.quantity, r.time) for r in readings}) == 160
        assert [r.value for r in readings if r.quantity == "temperature"] == [
            20.0 + i / 100 for i in range(80)
        ]
        # Everything was acked: a third session with the same id gets nothing more.
        with gateway(store, broker, client_id) as third:
            third.wait_subscribed(60)
            time.sleep(0.5)
            assert third.stats.received == 0
    finally:
        pub.close()


@pytest.mark.mosquitto
def test_crash_mid_stream_every_reading_lands_exactly_once_mosquitto(
    mosquitto: MosquittoBroker, store: FlakyStore, client_id: str
) -> None:
    """Test that with a real Mosquitto, a gateway stopped with unacked messages loses and doubles nothing.

    The broker redelivers the unacked messages and the queued ones to the next gateway with the
    same client id; the store holds every reading exactly once.
    """
    _crash_and_resume(mosquitto, store, client_id)


@pytest.mark.mosquitto
def test_a_queued_backlog_is_taken_within_the_window_while_the_store_is_stuck(
    mosquitto: MosquittoBroker, store: FlakyStore, client_id: str
) -> None:
    """Test that a gateway resuming a session with a big queued backlog holds a bounded window.

    Mosquitto 2.0.11 sends a resumed session's whole backlog after the first PUBACK, whatever the
    Receive Maximum; the gateway stops reading the socket instead, so while the store is stuck it
    holds the window plus at most one socket read, and once the store returns everything lands once.
    """
    from gateway._mqtt import _READ_SIZE
    from tests.gateway.gwtools import publish_all, six_pack

    first = gateway(store, mosquitto, client_id, mqtt_version="5", batch_messages=50, receive_maximum=100)
    first.start()
    first.wait_subscribed(60)
    first.stop()  # the session stays, with its subscription: the backlog queues for it
    backlog = [six_pack(ORG, f"dev-{i % 5}", i // 5) for i in range(3000)]
    publish_all(mosquitto.host, mosquitto.port, backlog)
    with gateway(store, mosquitto, client_id, mqtt_version="5", batch_messages=50, receive_maximum=100) as gw:
        wait_until(lambda: gw.stats.acked >= 50, what="the first acks")
        store.gate.clear()  # stuck from the next write on
        try:
            time.sleep(0.5)
            held = gw.stats.received - gw.stats.acked
            assert held <= 100 + _READ_SIZE // len(backlog[0][1]) < len(backlog) - gw.stats.acked, held
        finally:
            store.gate.set()
        wait_until(lambda: gw.stats.acked >= len(backlog), timeout=30, what="the whole backlog")
    assert store.count_readings() == 6 * len(backlog)


def test_every_poison_is_dead_lettered_and_the_good_packs_around_it_land(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str
) -> None:
    """Test that each poison pack (tests/gateway/poison.py) is dead-lettered with its code.

    Good packs between them all land.

    Before the fix, the first of them killed the decoder thread and nothing more was acked.
    """
    from tests.gateway.poison import DEVICE, POISON

    topic = build_topic(ORG, DEVICE, "telemetry")
    with gateway(store, embedded_broker, client_id) as gw:
        gw.wait_subscribed(60)
        for i, (_, payload, _) in enumerate(POISON):
            publisher.publish(*pack(DEVICE, i))
            publisher.publish(topic, payload)
        publisher.publish(*pack(DEVICE, len(POISON)))
        wait_until(lambda: gw.stats.acked == 2 * len(POISON) + 1, what="every message acked")
        assert gw.failure is None
    letters = {d.payload: d for d in store.dead_letters(limit=1000)}
    kept = {p[:PAYLOAD_LIMIT]: c for _, p, c in POISON}
    assert {payload: letters[payload].code for payload in kept} == kept
    assert all(d.reason for d in letters.values())
    assert store.count_readings() == 2 * (len(POISON) + 1)


def test_any_exception_of_one_message_is_that_messages_dead_letter(
    embedded_broker: EmbeddedBroker,
    publisher: Publisher,
    store: FlakyStore,
    client_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Test that a decoder bug that raises anything (not a WireError) dead-letters only that message.

    The decoder is made to fail on one payload, the way a hidden input would.
    """
    from gateway import consumer

    real = consumer.decode_pack

    def buggy(payload: bytes | str, **kw: object) -> list[Record]:
        if payload == b"[1]":
            raise ZeroDivisionError("division by zero")
        return real(payload, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(consumer, "decode_pack", buggy)
    with gateway(store, embedded_broker, client_id) as gw:
        gw.wait_subscribed(60)
        publisher.publish(*pack("dev-a", 1))
        publisher.publish(build_topic(ORG, "dev-a", "telemetry"), b"[1]")
        publisher.publish(*pack("dev-a", 2))
        wait_until(lambda: gw.stats.acked == 3, what="every message acked")
    (letter,) = store.dead_letters()
    assert letter.code == "unexpected"
    assert "ZeroDivisionError: division by zero" in letter.reason and letter.payload == b"[1]"
    assert store.count_readings() == 4


class _Crash(BaseException):
    """What no ``except Exception`` catches: stands for whatever kills a thread."""


def test_a_dying_decoder_thread_calls_the_fatal_handler_and_stop_raises(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str
) -> None:
    """Test that the decoder thread's death reaches on_fatal, wait() and stop(), naming thread and cause."""
    from gateway.consumer import GatewayFatal

    told: list[GatewayFatal] = []
    gw = gateway(store, embedded_broker, client_id, on_fatal=told.append)

    def crash(*args: object) -> None:
        raise _Crash("decoder bug")

    gw._add = crash  # type: ignore[method-assign]
    gw.start()
    gw.wait_subscribed(60)
    publisher.publish(*pack("dev-a", 1))
    with pytest.raises(GatewayFatal, match=r"decoder thread died .*_Crash: decoder bug"):
        gw.wait(timeout=30)
    assert len(told) == 1 and told[0] is gw.failure
    assert gw.stats.acked == 0  # unacked: the broker redelivers it to the restarted gateway
    with pytest.raises(GatewayFatal):
        gw.stop(timeout=5)
    with pytest.raises(GatewayError, match="create a new Gateway"):
        gw.start()


def test_a_dying_flusher_thread_calls_the_fatal_handler(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str
) -> None:
    """Test that a sink raising what no ``except Exception`` catches ends the gateway loudly, not silently."""
    from gateway.consumer import GatewayFatal
    from gateway.sinks.sqlite import SqliteSink

    class DyingSink(SqliteSink):
        def write(self, batch: object) -> None:
            raise _Crash("sink bug")

    gw = gateway(store, embedded_broker, client_id, sinks=[DyingSink(store)])
    with pytest.raises(GatewayFatal, match=r"flusher thread died .*sink bug"), gw:
        gw.wait_subscribed(60)
        publisher.publish(*pack("dev-a", 1))
        gw.wait(timeout=30)
    assert gw.failure is not None


@pytest.mark.influxdb
def test_a_restarted_gateway_keeps_its_devices_seen_series(
    embedded_broker: EmbeddedBroker, publisher: Publisher, store: FlakyStore, client_id: str, influxd: InfluxD
) -> None:
    """Test that the gateway names its InfluxDB sink by its client id: restarted (a new process,
    a new sink), it writes devices seen to the same series and counts on from its first run."""
    from gateway.sinks.influxdb1 import InfluxDB1Sink

    sent = 0
    for run in range(2):
        sink = InfluxDB1Sink(influxd.host, influxd.port, meta=f"meta_{client_id.replace('-', '_')}")
        with gateway(store, embedded_broker, client_id, sinks=[sink]) as gw:
            gw.wait_subscribed(60)
            for i in range(3):
                publisher.publish(*pack("dev-a", run * 10 + i))
            sent += 3
            wait_until(lambda: gw.stats.acked == 3, 60, f"3 acks in run {run}")
    meta = f"meta_{client_id.replace('-', '_')}"
    writers = influxd.query(f'SHOW TAG VALUES ON "{meta}" FROM "devices_seen" WITH KEY = "writer"')
    assert [v[1] for v in writers[0]["values"]] == [client_id]
    readings = influxd.query(f'SELECT "readings" FROM "{meta}".."devices_seen"')
    assert readings[0]["values"][0][1] == 2 * sent
