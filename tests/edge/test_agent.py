"""Tests of edge/agent.py: sampling, sensor failures, and the MQTT session against a real broker."""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.emulated import build_bus
from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.emulator import Bme280Emulator
from kits.errors import ConfigError
from kits.models import DeviceConfig, DeviceSensor, MqttSettings
from kits.wire import Status, build_topic, decode_pack, encode_pack
from tests.edge.conftest import FakeClock, Targets

ORG = "aarhus"
DEVICE = "school7-k3f9"


def _config(*sensors: DeviceSensor, host: str = "127.0.0.1", port: int = 1883, **kw: Any) -> DeviceConfig:
    return DeviceConfig(
        device=DEVICE,
        org=ORG,
        kit_profile="starter",
        mqtt=MqttSettings(host=host, port=port),
        sensors=list(sensors),
        bus="emulated",
        **kw,
    )


INDOOR = DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=10)
WINDOW = DeviceSensor(name="window", part="bme280", address=0x76, interval_s=10)


# ---------------------------------------------------------------------------- sample_once


def test_sample_once_returns_one_record_per_quantity(
    bme280_bus: EmulatedI2C, clock: FakeClock, targets: Targets
) -> None:
    """Test that a cycle yields stamped records of every quantity, that encode into a valid pack."""
    agent = Agent(_config(INDOOR), bme280_bus, clock=clock)
    records = agent.sample_once()
    assert sorted(r.quantity for r in records) == ["humidity", "pressure", "temperature"]
    for rec in records:
        assert (rec.org, rec.device, rec.sensor, rec.time) == (ORG, DEVICE, "indoor", clock.now)
        assert rec.value == pytest.approx(targets[rec.quantity], abs=0.1)
    decoded = decode_pack(encode_pack(records), org=ORG, device=DEVICE, now=clock.now)
    assert decoded == records
    assert agent.sensors[0].state == "ok"


def test_a_sensor_is_read_at_its_interval_not_each_cycle(bme280_bus: EmulatedI2C, clock: FakeClock) -> None:
    """Test that a sensor with interval_s 30 is read once per 30 s however often the agent samples."""
    sensor = DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=30)
    agent = Agent(_config(sensor), bme280_bus, clock=clock)
    read_at = []
    for _ in range(9):
        if agent.sample_once():
            read_at.append(clock.now)
        clock.advance(10)
    assert [t - read_at[0] for t in read_at] == [0, 30, 60]


def test_a_sensor_is_never_read_faster_than_its_driver_allows(
    bme280_bus: EmulatedI2C, clock: FakeClock
) -> None:
    """Test that interval_s below the BME280's minimum interval (1 s) is raised to it."""
    sensor = DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=0.1)
    agent = Agent(_config(sensor), bme280_bus, clock=clock)
    reads = 0
    for _ in range(20):  # 2 s in steps of 0.1 s
        reads += bool(agent.sample_once())
        clock.advance(0.1)
    assert reads == 2


def test_a_failing_sensor_does_not_stop_the_others(targets: Targets, clock: FakeClock) -> None:
    """Test that with one sensor unplugged the other is still published, the failure is counted
    and shown in meta, and the sensor recovers when plugged back."""
    window_chip = Bme280Emulator(targets, clock=clock)
    bus = EmulatedI2C({0x77: Bme280Emulator(targets, clock=clock), 0x76: window_chip})
    agent = Agent(_config(INDOOR, WINDOW), bus, clock=clock)
    assert {r.sensor for r in agent.sample_once()} == {"indoor", "window"}

    bus.detach(0x76)
    for _ in range(2):
        clock.advance(10)
        assert {r.sensor for r in agent.sample_once()} == {"indoor"}
    window = agent.meta()["sensors"]["window"]
    assert window["state"] == "failing"
    assert window["consecutive_failures"] == 2
    assert "bme280 at 0x76 did not answer" in window["last_error"]
    assert agent.meta()["sensors"]["indoor"]["state"] == "ok"

    bus.attach(0x76, window_chip)
    clock.advance(10)
    assert {r.sensor for r in agent.sample_once()} == {"indoor", "window"}
    assert agent.meta()["sensors"]["window"]["state"] == "ok"
    assert agent.meta()["sensors"]["window"]["consecutive_failures"] == 0


def test_a_sensor_missing_at_start_is_picked_up_when_plugged_in(targets: Targets, clock: FakeClock) -> None:
    """Test that a sensor absent at start is reported missing, then read once it appears."""
    bus = EmulatedI2C()
    agent = Agent(_config(INDOOR), bus, clock=clock)
    assert agent.sample_once() == []
    assert agent.meta()["sensors"]["indoor"]["state"] == "missing"
    bus.attach(0x77, Bme280Emulator(targets, clock=clock))
    clock.advance(1)
    assert len(agent.sample_once()) == 3


def test_a_sensor_warming_up_is_present_not_missing(clock: FakeClock) -> None:
    """Test that a PMSA003I in its 30 s warm-up is reported ok (it answered), not missing, and has
    no reading yet; a chip that never answered stays missing."""
    sensors = [
        DeviceSensor(name="air", part="pmsa003i", address=0x12, interval_s=1),
        DeviceSensor(name="gone", part="bme280", address=0x77, interval_s=1),
    ]
    bus = build_bus(sensors[:1], "street-air", clock=clock, seed=0)
    agent = Agent(_config(*sensors), bus, clock=clock)
    assert agent.sample_once() == []
    meta = agent.meta()["sensors"]
    assert meta["air"]["state"] == "ok" and meta["air"]["readings"] == 0
    assert meta["gone"]["state"] == "missing"
    assert agent.meta()["missing"] == ["gone"]


def test_a_driver_bug_is_contained_to_its_sensor(
    targets: Targets, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that an unexpected exception from one driver marks that sensor failing, others publish."""
    bus = EmulatedI2C(
        {0x77: Bme280Emulator(targets, clock=clock), 0x76: Bme280Emulator(targets, clock=clock)}
    )
    agent = Agent(_config(INDOOR, WINDOW), bus, clock=clock)
    agent.sample_once()
    window = agent.sensors[1]
    assert window.driver is not None

    def broken(context: Any) -> Any:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(window.driver, "read", broken)
    clock.advance(10)
    assert {r.sensor for r in agent.sample_once()} == {"indoor"}
    assert agent.meta()["sensors"]["window"]["state"] == "failing"
    assert "ZeroDivisionError" in agent.meta()["sensors"]["window"]["last_error"]


def test_a_power_cycled_sensor_is_set_up_again(targets: Targets, clock: FakeClock) -> None:
    """Test that after repeated failures the driver is recreated, so a replaced chip is reset."""
    bus = EmulatedI2C({0x77: Bme280Emulator(targets, clock=clock)})
    agent = Agent(_config(INDOOR), bus, clock=clock)
    agent.sample_once()
    bus.detach(0x77)
    for _ in range(3):
        clock.advance(10)
        agent.sample_once()
    fresh = Bme280Emulator(targets, clock=clock)
    bus.attach(0x77, fresh)
    clock.advance(10)
    assert len(agent.sample_once()) == 3
    fresh.write(bytes([0xF2]))
    assert fresh.read(1) == b"\x01"  # ctrl_hum written by a new driver's setup


def test_impossible_values_are_counted_not_published(
    bme280_bus: EmulatedI2C, clock: FakeClock, targets: Targets
) -> None:
    """Test that a pressure below the physical range (300 hPa) is dropped and counted."""
    targets["pressure"] = 250.0
    agent = Agent(_config(INDOOR), bme280_bus, clock=clock)
    assert sorted(r.quantity for r in agent.sample_once()) == ["humidity", "temperature"]
    indoor = agent.meta()["sensors"]["indoor"]
    assert indoor["state"] == "out_of_range"
    assert indoor["out_of_range"] == 1
    assert "pressure" in indoor["last_error"]


def test_readings_before_the_clock_syncs_are_held_then_stamped(bme280_bus: EmulatedI2C) -> None:
    """Test that readings taken before NTP are held with their monotonic time, not published, and
    stamped with the right UTC time once the clock syncs (docs/architecture.md, "Clock")."""
    wall = FakeClock(1000.0)  # 1970: no NTP yet
    mono = FakeClock(50.0)
    agent = Agent(_config(INDOOR), bme280_bus, clock=wall, monotonic=mono)
    assert agent.sample_once() == []
    assert agent.counters.held_unsynced == 3
    assert agent.meta()["clock_synced"] is False
    assert agent.outbox.unstamped() == 3
    assert agent.outbox.take(10) == []
    mono.advance(120.0)
    wall.now = 1_772_618_400.0  # NTP answered
    assert agent.outbox.stamp(wall.now, mono.now) == 3
    rows = agent.outbox.take(10)
    assert {r.time for r in rows} == {wall.now - 120.0}
    assert agent.meta()["outbox"]["unstamped"] == 0


def test_a_device_on_the_bus_but_not_in_the_config_is_reported(targets: Targets, clock: FakeClock) -> None:
    """Test that the start-up scan lists an unconfigured chip in meta as unexpected."""
    bus = EmulatedI2C(
        {0x77: Bme280Emulator(targets, clock=clock), 0x76: Bme280Emulator(targets, clock=clock)}
    )
    agent = Agent(_config(INDOOR), bus, clock=clock)
    agent.scan_unexpected()
    assert agent.meta()["unexpected"] == [{"address": 0x76, "part": "bme280", "detail": "chip id 0x60"}]


def test_an_unknown_part_fails_at_construction(bme280_bus: EmulatedI2C) -> None:
    """Test that a config naming a part without a driver is a ConfigError up front."""
    with pytest.raises(ConfigError, match="no driver for part 'bme688'"):
        Agent(_config(DeviceSensor(name="gas", part="bme688", address=0x77)), bme280_bus)


# ---------------------------------------------------------------------------- MQTT session


@pytest.fixture(params=["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def broker(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The broker under test: a fresh embedded one, or the session's real Mosquitto."""
    yield request.getfixturevalue("embedded_broker" if request.param == "embedded" else "mosquitto")


class Subscriber:
    """A plain paho client that records what arrives on a device's topics."""

    def __init__(self, broker: Any, name: str, device: str = DEVICE) -> None:
        self.device = device
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"suitcase/v1/{ORG}/{device}/#", qos=1)
        self.client.loop_start()

    def next(self, kind: Literal["telemetry", "status", "meta"], timeout: float = 30.0) -> mqtt.MQTTMessage:
        """Return the next message of ``kind``, skipping others; fail after ``timeout`` seconds."""
        topic = build_topic(ORG, self.device, kind)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if message.topic == topic:
                return message
        pytest.fail(f"no {kind} message within {timeout} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _status(message: mqtt.MQTTMessage) -> str:
    return Status.model_validate_json(message.payload).state


def test_agent_publishes_status_meta_and_telemetry_then_goes_offline(broker: Any) -> None:
    """Test the session end to end: retained online status and meta, a telemetry pack that the
    gateway's decoder accepts, and a retained offline status after stop()."""
    device = f"edge-test-{uuid.uuid4().hex[:8]}"  # the session's Mosquitto keeps retained messages
    config = _config(
        DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0),
        host=broker.host,
        port=broker.port,
        publish_interval_s=0.2,
    ).model_copy(update={"device": device})
    sub = Subscriber(broker, f"{device}-sub", device)
    agent = Agent(config, build_bus(config.sensors, "office-day", clock=time.time, seed=1))
    agent.start()
    try:
        online = Status.model_validate_json(sub.next("status").payload)
        assert (online.state, online.agent) == ("online", agent.agent_version)
        assert agent.wait_connected(30)
        meta = json.loads(sub.next("meta").payload)
        assert meta["kit_profile"] == "starter"
        assert meta["sensors"]["indoor"]["part"] == "bme280"
        telemetry = sub.next("telemetry")
        assert telemetry.qos == 1
        records = decode_pack(bytes(telemetry.payload), org=ORG, device=device, now=time.time())
        assert sorted(f"{r.sensor}/{r.quantity}" for r in records) == [
            "indoor/humidity",
            "indoor/pressure",
            "indoor/temperature",
        ]
        late = Subscriber(broker, f"{device}-late", device)
        retained = late.next("status")
        late.close()
        assert retained.retain and _status(retained) == "online"
    finally:
        agent.stop()
    assert _status(sub.next("status")) == "offline"
    sub.close()

    after = Subscriber(broker, f"{device}-after", device)
    try:
        retained = after.next("status")
        assert retained.retain and _status(retained) == "offline"
    finally:
        after.close()


@pytest.mark.mosquitto
def test_bad_commands_never_stop_the_agent(mosquitto: Any) -> None:
    """Test that commands of every kind of wrong, sent to a running agent through a real Mosquitto,
    are each answered with the reason (when they name an id) or counted and dropped, and that the
    agent answers the next good command and goes on publishing."""
    device = f"edge-test-{uuid.uuid4().hex[:8]}"
    config = _config(
        DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0),
        host=mosquitto.host,
        port=mosquitto.port,
        publish_interval_s=0.2,
    ).model_copy(update={"device": device})
    replies: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-server")
    client.on_message = lambda c, u, m: replies.put((m.topic, json.loads(m.payload)))
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(f"suitcase/v1/{ORG}/{device}/cmd/+/reply", qos=1)
    client.loop_start()
    sub = Subscriber(mosquitto, f"{device}-sub", device)
    agent = Agent(config, build_bus(config.sensors, "office-day", clock=time.time, seed=1))
    agent.start()
    try:
        assert agent.wait_connected(30)
        ping = json.dumps({"id": "warm-up", "args": {}}).encode()
        deadline = time.monotonic() + 60  # until the agent's subscription is in place at the broker
        while time.monotonic() < deadline:
            client.publish(build_topic(ORG, device, "cmd", "ping"), ping, qos=1)
            try:
                replies.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        sent = [
            ("ping", b"not json"),
            ("ping", b"[" * 50_000),
            ("ping", json.dumps({"id": "a", "args": [1]}).encode()),
            # over the agent's 256 KiB, under the broker's packet limit (deploy/mosquitto, 300,000 B)
            ("config", b'{"id": "big", "args": {"kit_profile": "' + b"x" * 270_000 + b'"}}'),
            ("reboot", json.dumps({"id": "b", "args": {}}).encode()),
            ("config", json.dumps({"id": "c", "args": {"outbox": {"max_pending": 10**12}}}).encode()),
            ("resend", json.dumps({"id": "d", "args": {"from": 0, "to": 10**400}}).encode()),
            ("ping", json.dumps({"id": "z", "args": {}}).encode()),
        ]
        for name, payload in sent:
            client.publish(build_topic(ORG, device, "cmd", name), payload, qos=1)
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while "z" not in got and time.monotonic() < deadline:
            try:
                _, reply = replies.get(timeout=0.5)
            except queue.Empty:
                continue
            got[reply["id"]] = reply
        assert "z" in got, (sorted(got), agent.counters)
        assert got["z"]["ok"] is True
        assert "args must be an object" in got["a"]["error"]
        assert "unknown command 'reboot'" in got["b"]["error"]
        assert "max_pending" in got["c"]["error"] and agent.config.outbox.max_pending == 1_000_000
        assert "finite number" in got["d"]["error"]
        assert "big" not in got  # over 256 KiB: dropped unread
        assert (agent.counters.bad_commands, agent.counters.commands_dropped) == (2, 1)
        sub.next("telemetry")  # still publishing
    finally:
        agent.stop()
        client.loop_stop()
        client.disconnect()
        sub.close()
