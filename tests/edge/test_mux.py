"""Sensors behind a TCA9548A multiplexer: paths in configs, the real Adafruit drivers through the
real ``adafruit_tca9548a`` on the emulated bus, scan and the agent's sampler."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest

from edge.emulated import build_bus
from edge.emulated.bus import EmulatedI2C
from edge.emulated.tca9548a import Tca9548aEmulator
from edge.logs import device_log
from edge.mux import BusTree
from edge.parts.bme280.emulator import Bme280Emulator
from edge.sampler import Sampler
from edge.scan import scan
from kits.config_file import parse_yaml_model
from kits.errors import ConfigError, SensorError
from kits.models import DeviceConfig, DeviceSensor, KitProfile, MqttSettings, MuxPort
from kits.wire import decode_pack
from tests.edge.conftest import FakeClock, Targets

TWO_BEHIND_ONE_MUX = """\
device: garden-pi
org: aarhus
bus: emulated
sensors:
  - {name: north, part: bme280, address: 0x70/0/0x77, interval_s: 1}
  - {name: south, part: bme280, address: "0x70/5/0x77", interval_s: 1}
  - {name: air, part: sht4x, address: 0x44, interval_s: 1}
"""


def _two_bme280s(clock: FakeClock) -> tuple[EmulatedI2C, Targets, Targets]:
    north, south = Targets(temperature=12.5, humidity=80.0), Targets(temperature=24.0, humidity=35.0)
    bus = EmulatedI2C({0x70: Tca9548aEmulator()})
    bus.attach_behind(0x70, 0, 0x77, Bme280Emulator(north, clock=clock))
    bus.attach_behind(0x70, 5, 0x77, Bme280Emulator(south, clock=clock))
    return bus, north, south


def test_a_path_is_read_and_written_as_one_address() -> None:
    """Test that ``0x70/0/0x77`` parses into the multiplexer channel and the part's address, and a
    config dumps it back as the same path (a direct address stays a number)."""
    config = parse_yaml_model(TWO_BEHIND_ONE_MUX, DeviceConfig, source="edge.yaml")
    north, south, air = config.sensors
    assert (north.mux, north.address, north.path) == (MuxPort(address=0x70, channel=0), 0x77, "0x70/0/0x77")
    assert south.path == "0x70/5/0x77" and air.mux is None and air.path == "0x44"
    dumped = config.model_dump(mode="json")
    assert [s["address"] for s in dumped["sensors"]] == ["0x70/0/0x77", "0x70/5/0x77", 0x44]
    assert "mux" not in dumped["sensors"][2]
    assert DeviceConfig.model_validate(dumped) == config
    assert DeviceConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("0x71/8/0x77", "channels 0 to 7, not 8: fix the channel"),
        ("0x69/0/0x77", "0x69 is not a TCA9548A address: a multiplexer is at 0x70 to 0x77"),
        ("0x70/0x77", "is not a bus path: write the part's address (0x77), or behind a TCA9548A"),
        ("0x70/1/0x70", "cannot have its multiplexer's address"),
        ("0x70/1/0x99", "less than or equal to 119"),
    ],
)
def test_a_path_that_cannot_exist_is_refused_at_load(address: str, problem: str) -> None:
    """Test that a path to no multiplexer, channel or address is refused with the file, field and fix."""
    text = TWO_BEHIND_ONE_MUX.replace("0x70/0/0x77", address)
    with pytest.raises(ConfigError) as caught:
        parse_yaml_model(text, DeviceConfig, source="edge.yaml")
    message = str(caught.value)
    assert message.startswith("edge.yaml line 5, field sensors.0"), message
    assert problem in message


@pytest.mark.parametrize(
    ("south", "problem"),
    [
        (
            "0x70/0/0x77",
            "sensors 'north' and 'south' both claim 0x70/0/0x77: move one with its address "
            "jumper, or put it on another channel of the multiplexer (0x70/0 to 7)",
        ),
        ("0x77", "sensor 'south' at 0x77 on the Pi's bus and sensor 'north' at 0x70/0/0x77 answer together"),
        ("0x70", "sensor 'south' at 0x70 has the address of a multiplexer in use"),
    ],
)
def test_two_sensors_claiming_one_place_are_refused_at_load(south: str, problem: str) -> None:
    """Test that two sensors at one path, or a Pi-bus sensor shadowing a channel, are refused."""
    text = TWO_BEHIND_ONE_MUX.replace('"0x70/5/0x77"', f'"{south}"')
    with pytest.raises(ConfigError) as caught:
        parse_yaml_model(text, DeviceConfig, source="edge.yaml")
    assert problem in str(caught.value)
    assert str(caught.value).startswith("edge.yaml")


def test_a_kit_profile_holds_two_bme280s_behind_a_mux() -> None:
    """Test that a kit profile takes paths, and still refuses two sensors at one plain address."""
    kit = (
        "id: k\nname: K\ndescription: d\npis: 1\nsensors:\n"
        "  - {part: bme280, address: 0x70/0/0x77, quantities: [temperature]}\n"
        "  - {part: bme280, name: second, address: 0x70/1/0x77, quantities: [temperature]}\n"
    )
    profile = parse_yaml_model(kit, KitProfile, source="k.yaml")
    assert [s.path for s in profile.sensors] == ["0x70/0/0x77", "0x70/1/0x77"]
    with pytest.raises(ConfigError, match=r"both claim 0x77.*TCA9548A multiplexer, each on its own channel"):
        parse_yaml_model(kit.replace("0x70/0/", "").replace("0x70/1/", ""), KitProfile, source="k.yaml")


def test_two_bme280s_at_0x77_read_through_the_real_tca9548a_driver(clock: FakeClock) -> None:
    """Test that the Adafruit BME280 driver behind each channel of the Adafruit TCA9548A driver reads
    its own chip, and the channels are closed between transactions."""
    bus, _, _ = _two_bme280s(clock)
    tree = BusTree(bus)
    from edge.drivers import ReadContext, load_driver

    bme280 = load_driver("bme280")
    one = bme280.create(tree.bus_for(MuxPort(address=0x70, channel=0)), 0x77, {})
    five = bme280.create(tree.bus_for(MuxPort(address=0x70, channel=5)), 0x77, {})
    a, b = one.read(ReadContext(time=clock.now)), five.read(ReadContext(time=clock.now))
    assert a.values["temperature"] == pytest.approx(12.5, abs=0.02)  # type: ignore[union-attr]
    assert b.values["temperature"] == pytest.approx(24.0, abs=0.02)  # type: ignore[union-attr]
    hub = bus.chip_at(0x70)
    assert isinstance(hub, Tca9548aEmulator) and hub.control == 0 and hub.selects > 4
    with pytest.raises(OSError, match="no ACK from 0x77"):
        bus.writeto(0x77, b"")  # with every channel closed, neither BME280 is on the Pi's bus


def test_both_channels_open_at_once_garble_the_bus(clock: FakeClock) -> None:
    """Test that the emulated bus, like a real one, fails when two chips answer at one address."""
    bus, _, _ = _two_bme280s(clock)
    bus.writeto(0x70, bytes([0b0010_0001]))
    with pytest.raises(OSError, match="2 chips answer at 0x77"):
        bus.writeto_then_readfrom(0x77, b"\xd0", bytearray(1))


def test_a_missing_multiplexer_is_a_sensor_error_with_the_fix() -> None:
    """Test that a path to a multiplexer that does not answer names it and what to check."""
    with pytest.raises(SensorError, match=r"no TCA9548A multiplexer answers at 0x71 \(path 0x71/2/...\)"):
        BusTree(EmulatedI2C()).bus_for(MuxPort(address=0x71, channel=2))


def test_scan_reports_what_is_behind_each_channel_with_its_path(clock: FakeClock) -> None:
    """Test that a scan finds the multiplexer and names each BME280 behind it by its path."""
    config = parse_yaml_model(TWO_BEHIND_ONE_MUX, DeviceConfig, source="edge.yaml")
    bus = build_bus(config.sensors, "office-day", clock=clock, seed=1)
    found = [(f.path, f.part) for f in scan(bus)]
    assert found == [
        ("0x44", "sht4x"),
        ("0x70", "tca9548a"),
        ("0x70/0/0x77", "bme280"),
        ("0x70/5/0x77", "bme280"),
    ]


def test_the_sampler_reads_two_bme280s_behind_one_mux(clock: FakeClock) -> None:
    """Test that the agent's sampler reads both BME280s at 0x77 and reports each path in meta."""
    config = parse_yaml_model(TWO_BEHIND_ONE_MUX, DeviceConfig, source="edge.yaml")
    bus, _, _ = _two_bme280s(clock)
    bus.attach(0x44, build_bus([config.sensors[2]], "office-day", clock=clock, seed=1).detach(0x44))  # type: ignore[arg-type]
    sampler = Sampler(config, bus, log=device_log(logging.getLogger("test"), "aarhus", "garden-pi"))
    values = {(s, q): v for s, q, v in sampler.read_due(clock.now)}
    assert values[("north", "temperature")] == pytest.approx(12.5, abs=0.02)
    assert values[("south", "temperature")] == pytest.approx(24.0, abs=0.02)
    assert ("air", "temperature") in values
    meta, missing = sampler.report(clock.now)
    assert missing == []
    assert (meta["north"].path, meta["south"].path, meta["air"].path) == ("0x70/0/0x77", "0x70/5/0x77", None)
    assert sampler.scan_unexpected() == []


def test_a_sensor_behind_a_missing_mux_is_missing_and_the_others_read(clock: FakeClock) -> None:
    """Test that an unplugged multiplexer makes its sensors missing, with the fix, not the agent fail."""
    config = parse_yaml_model(TWO_BEHIND_ONE_MUX, DeviceConfig, source="edge.yaml")
    bus = build_bus([config.sensors[2]], "office-day", clock=clock, seed=1)
    sampler = Sampler(config, bus, log=device_log(logging.getLogger("test"), "aarhus", "garden-pi"))
    values = sampler.read_due(clock.now)
    assert {s for s, _, _ in values} == {"air"}
    meta, missing = sampler.report(clock.now)
    assert missing == ["north", "south"]
    assert "no TCA9548A multiplexer answers at 0x70" in (meta["north"].last_error or "")


def test_device_sensor_path_round_trips_without_a_mux() -> None:
    """Test that a sensor on the Pi's bus dumps as before: a number address and no mux key."""
    sensor = DeviceSensor(name="indoor", part="bme280", address=0x77)
    assert sensor.model_dump()["address"] == 0x77 and "mux" not in sensor.model_dump()


def test_verify_checks_the_multiplexer_and_reads_behind_it(clock: FakeClock) -> None:
    """Test that `suitcase edge verify`'s bus check finds the multiplexer and each path, and its
    reading check reads both BME280s through the channels."""
    from edge.verify import check_bus, check_readings

    config = parse_yaml_model(TWO_BEHIND_ONE_MUX, DeviceConfig, source="edge.yaml")
    bus = build_bus(config.sensors, "office-day", clock=clock, seed=1)
    checks, present = check_bus(bus, config.sensors)
    assert [(c.name, c.outcome) for c in checks] == [
        ("multiplexer at 0x70", "ok"),
        ("north (bme280 at 0x70/0/0x77)", "ok"),
        ("south (bme280 at 0x70/5/0x77)", "ok"),
        ("air (sht4x at 0x44)", "ok"),
    ]
    readings = check_readings(bus, present[:2], clock=clock, sleep=clock.advance)
    assert [c.outcome for c in readings] == ["ok", "ok"], readings


def test_verify_names_a_missing_multiplexer_and_its_fix(clock: FakeClock) -> None:
    """Test that verify fails the multiplexer and its sensors when nothing answers at its address."""
    from edge.verify import check_bus

    config = parse_yaml_model(TWO_BEHIND_ONE_MUX, DeviceConfig, source="edge.yaml")
    bus = build_bus(config.sensors[2:], "office-day", clock=clock, seed=1)
    checks, present = check_bus(bus, config.sensors)
    by_name = {c.name: c for c in checks}
    assert by_name["multiplexer at 0x70"].outcome == "fail"
    assert "A0-A2 pins" in by_name["multiplexer at 0x70"].fix
    assert by_name["north (bme280 at 0x70/0/0x77)"].outcome == "fail"
    assert [s.name for s in present] == ["air"]


@pytest.mark.mosquitto
def test_the_agent_publishes_both_bme280s_behind_the_mux_over_mosquitto(mosquitto: Any) -> None:
    """Test end to end: the agent built from the path config reads both BME280s at 0x77 through
    the real TCA9548A driver and publishes both to a real Mosquitto, with each path in meta."""
    from edge.agent import Agent
    from tests.edge.test_agent import Subscriber

    device = f"mux-{uuid.uuid4().hex[:8]}"  # the session's Mosquitto keeps retained messages
    text = TWO_BEHIND_ONE_MUX.replace("garden-pi", device).replace(
        "org: aarhus", "org: aarhus\npublish_interval_s: 0.2"
    )
    config = parse_yaml_model(text, DeviceConfig, source="edge.yaml")
    config = config.model_copy(update={"mqtt": MqttSettings(host=mosquitto.host, port=mosquitto.port)})
    sub = Subscriber(mosquitto, f"{device}-sub", device)
    agent = Agent(config, build_bus(config.sensors, "office-day", clock=time.time, seed=1))
    agent.start()
    try:
        meta = json.loads(sub.next("meta").payload)
        assert {n: s.get("path") for n, s in meta["sensors"].items()} == {
            "north": "0x70/0/0x77",
            "south": "0x70/5/0x77",
            "air": None,
        }
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while not {"north/temperature", "south/temperature", "air/temperature"} <= seen:
            assert time.monotonic() < deadline, seen
            pack = sub.next("telemetry")
            seen |= {
                f"{r.sensor}/{r.quantity}"
                for r in decode_pack(bytes(pack.payload), org="aarhus", device=device, now=time.time())
            }
    finally:
        agent.stop()
        sub.close()
