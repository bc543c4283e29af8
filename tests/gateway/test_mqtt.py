"""Tests of gateway/_mqtt.py: the packet codec, and the session against a real Mosquitto."""

from __future__ import annotations

import struct
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway._mqtt import (
    Delivery,
    MqttError,
    MqttSession,
    MqttVersion,
    PacketReader,
    Will,
    connect_packet,
    disconnect_packet,
    puback_packets,
    publish_packet,
    subscribe_packet,
    unsubscribe_packet,
)
from suitcase.broker import MosquittoBroker
from tests.gateway.gwtools import Publisher
from tests.waiting import wait_until


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: str, payload: bytes, mid: int, qos: int, *, v5: bool, props: bytes = b"") -> bytes:
    """A PUBLISH as a broker sends it, built by hand from the specification."""
    raw = topic.encode()
    body = struct.pack(">H", len(raw)) + raw + (struct.pack(">H", mid) if qos else b"")
    if v5:
        body += _varint(len(props)) + props
    body += payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


messages = st.lists(
    st.tuples(
        st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
        st.binary(max_size=20_000),
        st.integers(1, 65_535),
        st.sampled_from([0, 1]),
    ),
    min_size=1,
    max_size=12,
)


@given(messages, st.lists(st.integers(1, 5000), max_size=20), st.booleans())
def test_reader_splits_publishes_cut_anywhere(
    sent: list[tuple[str, bytes, int, int]], cuts: list[int], v5: bool
) -> None:
    """Test that PUBLISHes arrive whole and in order however the stream is cut, in MQTT 3.1.1 and 5.

    Payloads up to 20 kB take 1-3 bytes of remaining length; MQTT 5 ones carry properties.
    """
    props = b"\x01\x01" + b"\x26" + struct.pack(">H", 1) + b"k" + struct.pack(">H", 200) + b"v" * 200
    stream = b"".join(_publish(t, p, m, q, v5=v5, props=props if v5 else b"") for t, p, m, q in sent)
    stream += b"\xd0\x00"  # a PINGRESP after them
    reader = PacketReader("5" if v5 else "3.1.1")
    got: list[Delivery] = []
    control = []
    pos = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        if cut > pos:
            m, c = reader.feed(stream[pos:cut])
            got += m
            control += c
            pos = cut
    assert got == [(t, p, m if q else 0, q) for t, p, m, q in sent]
    assert control == [(13, 0, b"")]


def test_reader_refuses_a_broken_stream() -> None:
    """Test that a stream that is not MQTT raises MqttError instead of yielding garbage."""
    with pytest.raises(MqttError):
        PacketReader("3.1.1").feed(b"\x30\xff\xff\xff\xff\x01")  # a 5-byte remaining length
    with pytest.raises(MqttError):
        PacketReader("3.1.1").feed(b"\x34\x05\x00\x01a\x00\x01")  # QoS 2 on a QoS 1 subscription
    with pytest.raises(MqttError):
        PacketReader("3.1.1").feed(b"\x30\x04\x00\x09ab")  # topic longer than the packet


def test_packets_are_what_the_specification_says() -> None:
    """Test CONNECT (session kept, v5 properties), SUBSCRIBE at QoS 1 and back-to-back PUBACKs."""
    v3 = connect_packet("gw", version="3.1.1", keepalive=30, username="u", password="p")
    assert v3 == b"\x10\x14\x00\x04MQTT\x04\xc0\x00\x1e\x00\x02gw\x00\x01u\x00\x01p"
    v5 = connect_packet("gw", version="5", keepalive=30, receive_maximum=2000)
    assert v5 == b"\x10\x17\x00\x04MQTT\x05\x00\x00\x1e\x08\x11\xff\xff\xff\xff\x21\x07\xd0\x00\x02gw"
    assert subscribe_packet("a/#", version="3.1.1") == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    assert subscribe_packet("a/#", version="5") == b"\x82\x09\x00\x01\x00\x00\x03a/#\x01"
    assert puback_packets([1, 0x1234]) == b"\x40\x02\x00\x01\x40\x02\x12\x34"


def test_group_packets_are_what_the_specification_says() -> None:
    """Test a retained QoS 1 Last Will (MQTT 5: its delay), a second filter in SUBSCRIBE, UNSUBSCRIBE,
    a retained QoS 0 PUBLISH and the MQTT 5 DISCONNECTs (with will, ending the session)."""
    will = Will("g/w", b"down", retain=True, delay_s=5)
    v3 = connect_packet("gw", version="3.1.1", keepalive=30, will=will)
    assert v3 == b"\x10\x19\x00\x04MQTT\x04\x2c\x00\x1e\x00\x02gw\x00\x03g/w\x00\x04down"
    v5 = connect_packet("gw", version="5", keepalive=30, will=will)
    assert v5.endswith(b"\x00\x02gw\x05\x18\x00\x00\x00\x05\x00\x03g/w\x00\x04down")
    assert v5[9] == 0x2C  # will, will QoS 1, will retain; clean start off
    assert subscribe_packet("a/#", version="3.1.1", also=[("b/+", 0)]) == (
        b"\x82\x0e\x00\x01\x00\x03a/#\x01\x00\x03b/+\x00"
    )
    assert unsubscribe_packet(["a/#", "b"], version="3.1.1") == b"\xa2\x0a\x00\x02\x00\x03a/#\x00\x01b"
    assert unsubscribe_packet(["a"], version="5") == b"\xa2\x06\x00\x02\x00\x00\x01a"
    assert publish_packet("t", b"up", version="3.1.1", retain=True) == b"\x31\x05\x00\x01tup"
    assert publish_packet("t", b"up", version="5") == b"\x30\x06\x00\x01t\x00up"
    assert disconnect_packet(version="3.1.1", will=True) == b"\xe0\x00"
    assert disconnect_packet(version="5", will=True) == b"\xe0\x02\x04\x00"
    assert disconnect_packet(version="5", end_session=True) == b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"


class _Collector:
    """Collects what a session delivers, with the generation of each chunk."""

    def __init__(self) -> None:
        self.got: list[tuple[int, Delivery]] = []
        self.lock = threading.Lock()

    def __call__(self, generation: int, received_at: float, chunk: list[Delivery]) -> None:
        with self.lock:
            self.got += [(generation, d) for d in chunk]

    def payloads(self) -> set[bytes]:
        with self.lock:
            return {d[1] for _, d in self.got}

    def take(self) -> list[tuple[int, Delivery]]:
        with self.lock:
            got, self.got = self.got, []
        return got


def _session(broker: MosquittoBroker, cid: str, sink: _Collector, version: MqttVersion) -> MqttSession:
    subscribed = threading.Event()
    session = MqttSession(
        broker.host,
        broker.port,
        cid,
        "suitcase/v1/+/+/telemetry",
        sink,
        version=version,
        receive_maximum=100,
        on_subscribed=subscribed.set,
        reconnect_min_s=0.1,
    )
    session.start()
    assert subscribed.wait(30)
    return session


@pytest.mark.mosquitto
@pytest.mark.parametrize("version", ["3.1.1", "5"])
def test_unacked_messages_come_back_on_the_next_connection_and_old_acks_are_refused(
    mosquitto: MosquittoBroker, version: MqttVersion
) -> None:
    """Test the session's delivery contract against a real Mosquitto.

    Messages not acked when the connection drops are redelivered on the next one; an ack for a
    message of the dropped connection is refused (never sent on the new one); once acked, a new
    session with the same client id receives nothing again.
    """
    cid = f"mq-{uuid.uuid4().hex[:8]}"
    sink = _Collector()
    pub = Publisher(mosquitto.host, mosquitto.port)
    session = _session(mosquitto, cid, sink, version)
    try:
        for i in range(10):
            pub.publish(f"suitcase/v1/o/d{i}/telemetry", b"x%d" % i)
        wait_until(lambda: len(sink.got) == 10, what="10 messages")
        first = sink.take()
        old = first[0][0]
        assert session.ack(old, [d[2] for _, d in first[:4]])  # 4 acked, 6 left unacked
        assert session._sock is not None
        session._sock.shutdown(2)  # the connection drops
        unacked = {b"x%d" % i for i in range(4, 10)}
        # Every unacked message again (copies may come first: at-least-once), not just six of them.
        wait_until(lambda: session.generation == old + 1 and sink.payloads() >= unacked, what="redelivery")
        assert not session.ack(old, [d[2] for _, d in first[4:]]), "an ack of the old connection went out"
        # QoS 1 is at-least-once: under load Mosquitto may resend a message twice on the new
        # connection, so collect until the stream is quiet and ack every copy received.
        again = sink.take()
        while True:
            time.sleep(0.3)
            more = sink.take()
            if not more:
                break
            again += more
        assert sorted({d[1] for _, d in again}) == [b"x%d" % i for i in range(4, 10)]
        assert {g for g, _ in again} == {old + 1}
        assert session.ack(old + 1, [d[2] for _, d in again])
    finally:
        session.stop()
    quiet = _session(mosquitto, cid, sink, version)
    try:
        pub.publish("suitcase/v1/o/late/telemetry", b"late")
        wait_until(lambda: len(sink.got) >= 1, what="the new message")
        time.sleep(0.3)
        assert [d[1] for _, d in sink.take()] == [b"late"]  # nothing acked came back
    finally:
        quiet.stop()
        pub.close()


@pytest.mark.mosquitto
def test_mqtt5_publish_properties_are_skipped(mosquitto: MosquittoBroker) -> None:
    """Test that with MQTT 5, a message published with properties still arrives intact."""
    sink = _Collector()
    session = _session(mosquitto, f"mq-{uuid.uuid4().hex[:8]}", sink, "5")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [("k" * 100, "v" * 100)]
        props.MessageExpiryInterval = 3600
        props.ContentType = "application/senml+json"
        pub.publish("suitcase/v1/o/d/telemetry", b"[1]", qos=1, properties=props).wait_for_publish(30)
        wait_until(lambda: len(sink.got) == 1, what="the message")
        [(generation, (topic, payload, mid, qos))] = sink.take()
        assert (topic, payload, qos) == ("suitcase/v1/o/d/telemetry", b"[1]", 1)
        assert session.ack(generation, [mid])
    finally:
        pub.disconnect()
        pub.loop_stop()
        session.stop()


def test_unreachable_broker_raises_and_a_lost_one_is_retried() -> None:
    """Test that start() raises OSError when nothing listens, so the gateway can say so."""
    from suitcase.broker import free_port

    session = MqttSession("127.0.0.1", free_port(), "x", "t", lambda g, r, m: None)
    with pytest.raises(OSError):
        session.start()


def test_a_topic_that_is_not_utf8_is_delivered_not_fatal_to_the_connection() -> None:
    """Test that a PUBLISH whose topic is not UTF-8 is delivered (replacement characters), not an error.

    Refusing it would drop the connection, and the broker would redeliver it: a loop.
    """
    messages, _ = PacketReader("3.1.1").feed(b"\x30\x06\x00\x02a\xffxy")
    assert messages == [("a\ufffd", b"xy", 0, 0)]


@pytest.mark.mosquitto
def test_a_dying_network_thread_calls_on_fatal(mosquitto: MosquittoBroker) -> None:
    """Test that an exception that ends the network thread reaches ``on_fatal`` instead of passing unseen."""
    died: list[BaseException] = []
    subscribed = threading.Event()

    def lost(reason: str) -> None:
        raise RuntimeError(f"on_lost failed ({reason})")

    cid = f"fatal-{uuid.uuid4().hex[:8]}"
    session = MqttSession(
        mosquitto.host,
        mosquitto.port,
        cid,
        "suitcase/v1/+/+/telemetry",
        lambda g, r, m: None,
        on_subscribed=subscribed.set,
        on_lost=lost,
        on_fatal=died.append,
    )
    session.start()
    try:
        assert subscribed.wait(30)
        thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid)  # takes the session over
        thief.connect(mosquitto.host, mosquitto.port)
        thief.loop_start()
        try:
            wait_until(lambda: bool(died), what="the network thread's death reported")
        finally:
            thief.disconnect()
            thief.loop_stop()
        assert isinstance(died[0], RuntimeError) and "on_lost failed" in str(died[0])
    finally:
        session.stop()
