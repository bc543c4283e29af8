"""Delivery guarantees of the edge agent against a real Mosquitto (docs/architecture.md, "Delivery
guarantees" 1 and 5): a graceful broker restart loses nothing and doubles nothing in the store; a
broker crash loses acknowledged readings, which ``resend`` recovers from the outbox.

The "store" here is a persistent MQTT session keyed like every store: (org, device, sensor,
quantity, time) -> value, so a redelivery overwrites; it stands in for the gateway, which other
tests cover.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.emulated import build_bus
from edge.outbox import Outbox, OutboxFull
from kits.models import DeviceConfig, DeviceSensor, MqttSettings, OutboxSettings
from kits.wire import Record, build_topic, decode_pack
from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from tests.services import require_service
from tests.waiting import wait_until

pytestmark = pytest.mark.mosquitto

ORG = "aarhus"


class Store:
    """A persistent-session subscriber that keeps readings by their identity."""

    def __init__(self, broker: MosquittoBroker, device: str) -> None:
        self.device = device
        self.readings: dict[tuple[str, str, float], float] = {}
        self.messages = 0
        self.replies: dict[str, Any] = {}
        self.online_since: float | None = None  # the device's last retained "online" status
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"store-{device}", clean_session=False
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"suitcase/v1/{ORG}/{device}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.broker = broker

    def connect(self) -> None:
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()

    def open_session(self) -> None:
        """Make the broker keep this store's subscription while it is away (and across restarts)."""
        self.connect()
        wait_until(self.subscribed.is_set, 30, "the store's subscription")
        self.disconnect()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/telemetry"):
            records = decode_pack(message.payload, org=ORG, device=self.device, now=time.time())
            with self._lock:
                self.messages += 1
                for r in records:
                    self.readings[(r.sensor, r.quantity, r.time)] = r.value
        elif message.topic.endswith("/status"):
            status = json.loads(message.payload)
            if status["state"] == "online":
                self.online_since = status["since"]
        elif message.topic.endswith("/reply"):
            reply = json.loads(message.payload)
            self.replies[reply["id"]] = reply

    def wait_for(self, keys: set[tuple[str, str, float]], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if keys <= set(self.readings):
                    return
            time.sleep(0.1)
        missing = keys - set(self.readings)
        pytest.fail(f"{len(missing)} of {len(keys)} readings never arrived, e.g. {sorted(missing)[:3]}")


@pytest.fixture()
def own_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto of this test alone, so it can be stopped, killed and restarted on its port."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto")
    broker = MosquittoBroker(tmp_path / "mosquitto", port=free_port())
    broker.start()
    yield broker
    broker.stop()


def _agent(broker: MosquittoBroker, state: Path, device: str, **outbox: Any) -> Agent:
    config = DeviceConfig(
        device=device,
        org=ORG,
        mqtt=MqttSettings(host=broker.host, port=broker.port, keepalive=5),
        sensors=[
            DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0),
            DeviceSensor(name="air", part="sht4x", address=0x44, interval_s=1.0),
        ],
        bus="emulated",
        publish_interval_s=0.25,
        outbox=OutboxSettings(**outbox),
    )
    return Agent(config, build_bus(config.sensors, "office-day", clock=time.time, seed=3), state_dir=state)


def _outbox_keys(agent: Agent) -> set[tuple[str, str, float]]:
    rows = agent.outbox._db.execute("SELECT sensor, quantity, time FROM readings").fetchall()
    return {(s, q, t) for s, q, t in rows}


def _pending_before(agent: Agent, cut: float) -> int:
    with agent.outbox._lock:
        row = agent.outbox._db.execute("SELECT COUNT(*) FROM readings WHERE state = 0 AND time <= ?", (cut,))
        return int(row.fetchone()[0])


def _outbox_keys_of(state: Path) -> set[tuple[str, str, float]]:
    from edge.outbox import Outbox

    box = Outbox(state / "outbox.sqlite")
    try:
        return {(s, q, t) for s, q, t in box._db.execute("SELECT sensor, quantity, time FROM readings")}
    finally:
        box.close()


def test_a_broker_restart_delivers_every_reading_exactly_once(
    own_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Test that readings taken while the broker is stopped (gracefully) wait in the outbox and,
    after the restart, all land in the store once: nothing lost, nothing doubled."""
    device = f"pi-{uuid.uuid4().hex[:6]}"
    store = Store(own_broker, device)
    store.connect()
    # Subscribed before the agent's first publish (it would miss those readings under load).
    wait_until(store.subscribed.is_set, 30, "the store's subscription")
    agent = _agent(own_broker, tmp_path / "state", device, drain_readings_per_s=200)
    agent.start()
    try:
        assert agent.wait_connected(30)
        time.sleep(2.0)
        own_broker.stop()
        wait_until(lambda: not agent.connected, 60, "the agent to notice the outage", every=0.05)
        backlog_before = agent.outbox.pending
        # the outage: readings go on, into the outbox (was a 4 s sleep, then the same check)
        wait_until(lambda: agent.outbox.pending >= backlog_before + 10, 60, "readings into the outbox")
        own_broker.start()
        assert agent.wait_connected(30)
        # The backlog drains (live readings go on).
        wait_until(lambda: agent.outbox.pending <= 10, 60, "the backlog to drain", every=0.05)
        keys = _outbox_keys(agent)
    finally:
        agent.stop()
    store.wait_for(keys, 60)
    store.disconnect()
    assert keys <= set(store.readings)
    assert set(store.readings) <= _outbox_keys_of(tmp_path / "state")  # nothing that was not read
    assert agent.counters.readings_acknowledged >= len(keys) - 10


def test_resend_recovers_what_a_broker_crash_lost(own_broker: MosquittoBroker, tmp_path: Path) -> None:
    """Test that readings the broker acknowledged but had not saved when it was killed -9 are
    re-published from the outbox by the resend command."""
    device = f"pi-{uuid.uuid4().hex[:6]}"
    store = Store(own_broker, device)
    store.open_session()  # the gateway is down: the broker queues for its persistent session
    agent = _agent(own_broker, tmp_path / "state", device)
    agent.start()
    try:
        assert agent.wait_connected(30)
        started = time.time()
        time.sleep(3.0)
        cut = time.time() - 0.5
        # every reading up to the cut acknowledged by the broker (and queued for the store)
        wait_until(lambda: _pending_before(agent, cut) == 0, 60, "the readings before the cut", every=0.05)
        keys = {k for k in _outbox_keys(agent) if k[2] <= cut}
        assert keys
        assert own_broker._process is not None
        os.kill(own_broker._process.pid, signal.SIGKILL)  # before its 30 s autosave
        own_broker._process.wait()
        own_broker._process = None
        own_broker.start()
        store.connect()
        time.sleep(1.5)
        lost = keys - set(store.readings)
        assert lost, "the crash should have lost the queued readings"
        assert agent.wait_connected(30)
        request_id = str(uuid.uuid4())
        store.client.publish(
            build_topic(ORG, device, "cmd", "resend"),
            json.dumps({"id": request_id, "args": {"from": started - 60, "to": time.time()}}),
            qos=1,
        )
        wait_until(lambda: request_id in store.replies, 60, "the resend reply", every=0.05)
        reply = store.replies[request_id]
        assert reply["ok"] is True and reply["result"]["readings"] >= len(keys)
        store.wait_for(keys, 60)
    finally:
        agent.stop()
        store.disconnect()


class _FullOutbox(Outbox):
    """An outbox whose disk is full: every write fails as SQLite fails on a full filesystem
    (tests/reliability/test_edge_faults.py fills a real one)."""

    def add(self, values: Any, *, time: float | None, mono: float) -> Any:
        raise OutboxFull("the outbox is full (database or disk is full): free space on the SD card")


def test_readings_the_full_outbox_cannot_take_wait_in_memory_while_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that with the outbox's disk full and the broker unreachable, readings wait in memory up
    to MAX_UNSTORED (the oldest beyond it dropped and counted in meta's ``unstored_dropped``) and
    are published once the broker is there."""
    import edge.publisher

    monkeypatch.setattr(edge.publisher, "MAX_UNSTORED", 10)
    port = free_port()
    device = f"pi-{uuid.uuid4().hex[:6]}"
    config = DeviceConfig(
        device=device,
        org=ORG,
        mqtt=MqttSettings(host="127.0.0.1", port=port, keepalive=5),
        sensors=[DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0)],
        bus="emulated",
        publish_interval_s=0.25,
    )
    bus = build_bus(config.sensors, "office-day", clock=time.time, seed=3)
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto")
    broker = MosquittoBroker(tmp_path / "mosquitto", port=port)
    store = Store(broker, device)
    # The store's session exists before the outage: whenever the agent gets through, the broker
    # keeps what it publishes for the store (else it could publish before the store subscribed).
    broker.start()
    store.open_session()
    broker.stop()
    agent = Agent(config, bus, outbox=_FullOutbox(None))
    taken: list[Record] = []
    sample = agent.sample_once

    def noting() -> list[Record]:
        records = sample()
        taken.extend(records)
        return records

    monkeypatch.setattr(agent, "sample_once", noting)
    agent.start()
    try:
        wait_until(lambda: len(taken) >= 15, 30, "five sampling rounds offline", every=0.05)
        # The publishing thread moves each round into memory after the sampling thread took it.
        wait_until(lambda: agent.counters.unstored_dropped >= 3, 30, "the oldest dropped", every=0.05)
        broker.start()
        try:
            store.connect()
            assert agent.wait_connected(30)

            def held_arrived() -> bool:  # readings taken before the agent connected: only memory had them
                with store._lock:
                    since = store.online_since
                    return since is not None and sum(1 for _, _, t in store.readings if t < since) >= 10

            wait_until(held_arrived, 30, "the readings held in memory", every=0.05)
        finally:
            store.disconnect()
            broker.stop()
    finally:
        agent.stop()
    assert agent.counters.published_without_outbox >= 10
