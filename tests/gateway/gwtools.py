"""Helpers of the gateway tests: a publisher, a store that fails on demand, polling."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.store import SqliteStore, StoreError
from kits.wire import Record

NOW = 1_750_000_000.0


class FlakyStore(SqliteStore):
    """A real SQLite store whose write fails while ``failing`` is set and blocks while ``gate`` is clear."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failing = False
        self.gate = threading.Event()
        self.gate.set()
        self.writes_done = 0

    def write(self, records: Sequence[Record]) -> None:
        self.gate.wait()
        if self.failing:
            raise StoreError("store is down (test)")
        super().write(records)
        self.writes_done += 1


class Publisher:
    """A plain paho client publishing at QoS 1 and waiting for each PUBACK."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(30)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


SIX = (
    ("bme280", "temperature"),
    ("bme280", "humidity"),
    ("bme280", "pressure"),
    ("scd40", "co2"),
    ("scd40", "temperature"),
    ("scd40", "humidity"),
)


def six_pack(org: str, device: str, index: int, base: float = NOW - 200_000) -> tuple[str, bytes]:
    """Return the topic and payload of a pack of 6 readings of ``device``, distinct per ``index``."""
    from kits.wire import build_topic, encode_pack

    t = base + index
    values = (20.0, 40.0, 1000.0, 400.0, 21.0, 41.0)
    records = [
        Record(org, device, sensor, q, v + (index % 1000) / 100, t)
        for (sensor, q), v in zip(SIX, values, strict=True)
    ]
    return build_topic(org, device, "telemetry"), encode_pack(records)


def publish_all(host: str, port: int, messages: Sequence[tuple[str, bytes]], timeout: float = 120.0) -> None:
    """Publish ``messages`` at QoS 1 as fast as the broker takes them; return once all are PUBACKed."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"feed-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(deadline - time.monotonic(), 0.1))
            assert info.is_published(), "the broker did not PUBACK every message in time"
    finally:
        client.disconnect()
        client.loop_stop()
