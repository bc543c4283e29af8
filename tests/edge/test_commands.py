"""Tests of edge/commands.py and the agent's health, calibration and filters (no broker needed),
and of a broker that refuses the device's credentials (a real Mosquitto)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge.agent import Agent
from edge.commands import run_command
from edge.config import load_saved_device_config
from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.emulator import Bme280Emulator
from kits.models import DeviceConfig, DeviceSensor, MqttSettings, SensorFilter
from suitcase.broker import MosquittoBroker, find_mosquitto
from tests.edge.conftest import FakeClock, Targets
from tests.services import require_service
from tests.waiting import wait_until

SENSOR = DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0)


def _agent(bus: EmulatedI2C, clock: FakeClock, state: Path | None = None, **kw: object) -> Agent:
    config = DeviceConfig(device="pi-1", org="aarhus", sensors=[SENSOR], bus="emulated", **kw)  # type: ignore[arg-type]
    return Agent(config, bus, clock=clock, state_dir=state, cpu_temperature=lambda: 48.3)


def _cmd(agent: Agent, name: str, args: dict[str, object]) -> dict[str, object]:
    reply = run_command(agent, name, json.dumps({"id": "r1", "args": args}).encode())
    assert reply is not None
    return reply.model_dump()


def test_ping_answers_with_the_agent_version(bme280_bus: EmulatedI2C, clock: FakeClock) -> None:
    """Test that ping replies ok with the time and the agent version."""
    reply = _cmd(_agent(bme280_bus, clock), "ping", {})
    assert reply["ok"] is True and reply["id"] == "r1"
    assert reply["result"]["pong"] == clock.now


def test_config_applies_calibration_without_restart_and_persists_it(
    bme280_bus: EmulatedI2C, clock: FakeClock, targets: Targets, tmp_path: Path
) -> None:
    """Test that a config command's calibration applies to the next reading, shows its version in
    meta, and is saved for the next start."""
    agent = _agent(bme280_bus, clock, tmp_path)
    calibration = [
        {"sensor": "indoor", "quantity": "temperature", "offset": -1.5, "scale": 1.0, "version": 4}
    ]
    reply = _cmd(agent, "config", {"calibration": calibration, "publish_interval_s": 5})
    assert reply["ok"] is True and reply["result"]["calibration_version"] == 4
    temperature = next(r.value for r in agent.sample_once() if r.quantity == "temperature")
    assert temperature == pytest.approx(targets["temperature"] - 1.5, abs=0.05)
    meta = agent.meta()
    assert meta["calibration_version"] == 4 and meta["sensors"]["indoor"]["calibration_version"] == 4
    assert meta["cpu_temperature"] == 48.3
    saved = load_saved_device_config(tmp_path)
    assert saved is not None and saved.calibration[0].offset == -1.5 and saved.publish_interval_s == 5


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"device": "other"}, "may not change device"),
        ({"publish_interval_s": -3}, "publish_interval_s"),
        ({"calibration": [{"sensor": "nope", "quantity": "temperature"}]}, "not in sensors"),
        ({"sensors": [{"name": "x", "part": "bme280", "address": 0x77, "intervall_s": 3}]}, "intervall_s"),
    ],
)
def test_a_bad_config_is_refused_and_nothing_changes(
    bme280_bus: EmulatedI2C, clock: FakeClock, args: dict[str, object], error: str
) -> None:
    """Test that a config the device cannot take is refused with the key named, and not applied."""
    agent = _agent(bme280_bus, clock)
    before = agent.config
    reply = _cmd(agent, "config", args)
    assert reply["ok"] is False and error in reply["error"]
    assert agent.config is before


def test_identify_blinks_the_act_led_or_says_why_not(
    bme280_bus: EmulatedI2C, clock: FakeClock, tmp_path: Path
) -> None:
    """Test that identify sets the ACT LED's trigger to timer, and off a Pi replies why it cannot."""
    agent = _agent(bme280_bus, clock)
    agent.leds_dir = tmp_path
    assert _cmd(agent, "identify", {"seconds": 1})["result"]["blinking"] is False
    (tmp_path / "ACT").mkdir()
    (tmp_path / "ACT" / "trigger").write_text("none [mmc0] timer heartbeat")
    assert _cmd(agent, "identify", {"seconds": 1})["result"]["blinking"] is True
    assert (tmp_path / "ACT" / "trigger").read_text() == "timer"
    # put back by a timer thread after the second (was a 1.3 s sleep: a loaded machine runs it later)
    wait_until(lambda: (tmp_path / "ACT" / "trigger").read_text() == "mmc0", 30, "the trigger put back")


def test_unknown_commands_and_bad_arguments_get_an_error_reply(
    bme280_bus: EmulatedI2C, clock: FakeClock
) -> None:
    """Test that an unknown command or a resend without times replies ok=false, saying what to send."""
    agent = _agent(bme280_bus, clock)
    assert "use one of" in _cmd(agent, "reboot", {})["error"]
    assert "must be a number" in _cmd(agent, "resend", {"from": "yesterday", "to": 1})["error"]
    assert run_command(agent, "ping", b"not json") is None


def test_a_stuck_sensor_is_flagged_and_reset(targets: Targets, clock: FakeClock) -> None:
    """Test that identical readings stuck_after times in a row flag the sensor stuck in meta."""
    bus = EmulatedI2C({0x77: Bme280Emulator(targets, clock=clock)})
    config = DeviceConfig(
        device="pi-1", org="aarhus", sensors=[SENSOR.model_copy(update={"stuck_after": 5})], bus="emulated"
    )
    agent = Agent(config, bus, clock=clock)
    for _ in range(7):
        agent.sample_once()
        clock.advance(1.0)
    assert agent.meta()["sensors"]["indoor"]["state"] == "stuck"
    targets["temperature"] += 0.5
    agent.sample_once()
    assert agent.meta()["sensors"]["indoor"]["state"] == "ok"


def test_a_median_filter_removes_a_spike(targets: Targets, clock: FakeClock) -> None:
    """Test that a median filter of window 3 hides a one-reading spike."""
    bus = EmulatedI2C({0x77: Bme280Emulator(targets, clock=clock)})
    sensor = SENSOR.model_copy(update={"filter": SensorFilter(kind="median", window=3)})
    agent = Agent(
        DeviceConfig(device="pi-1", org="aarhus", sensors=[sensor], bus="emulated"), bus, clock=clock
    )
    seen = []
    for spike in (0.0, 0.0, 10.0, 0.0):
        targets["temperature"] = 21.5 + spike
        seen.append(next(r.value for r in agent.sample_once() if r.quantity == "temperature"))
        clock.advance(1.0)
    assert max(seen) < 22.0


def test_an_outbox_that_fails_does_not_stop_publishing(bme280_bus: EmulatedI2C, clock: FakeClock) -> None:
    """Test that with the outbox's disk full the readings still go out live, and meta says why."""
    agent = _agent(bme280_bus, clock)
    agent.outbox._db.execute("PRAGMA max_page_count = 1")  # a disk with no room at all
    agent.outbox._db.execute("PRAGMA cache_size = 0")
    for _ in range(50):
        records = agent.sample_once()
        clock.advance(1.0)
        if agent.outbox_error:
            break
    assert agent.outbox_error is not None and "free space" in agent.outbox_error
    assert len(records) == 3  # still returned, and queued for live publishing
    assert agent.meta()["counters"]["outbox_errors"] >= 1


@pytest.mark.mosquitto
def test_a_broker_refusing_the_credentials_is_reported_and_sampling_goes_on(
    tmp_path: Path, targets: Targets
) -> None:
    """Test that refused credentials log a clear error, are counted, and readings wait in the outbox."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto")
    broker = MosquittoBroker(tmp_path / "m", allow_anonymous=False)
    broker.start()
    try:
        bus = EmulatedI2C({0x77: Bme280Emulator(targets, clock=time.time)})
        config = DeviceConfig(
            device="pi-1",
            org="aarhus",
            sensors=[SENSOR],
            bus="emulated",
            publish_interval_s=0.2,
            mqtt=MqttSettings(host=broker.host, port=broker.port, username="pi-1", password="wrong"),
        )
        agent = Agent(config, bus)
        agent.start()
        wait_until(lambda: agent.counters.connection_refused >= 1, 30, "the broker's refusal")
        assert agent.connection_error is not None and "refused" in agent.connection_error
        # readings kept for when the credentials are fixed (was a 1.5 s sleep before the check)
        wait_until(lambda: agent.outbox.pending >= 3, 30, "readings kept in the outbox")
        agent.stop()
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"outbox": {"max_pending": 10**12}}, "outbox.max_pending 1000000000000 is over 5000000"),
        ({"publish_interval_s": 0.01}, "publish_interval_s 0.01 s is below 1 s"),
        (
            {"sensors": [{"name": "indoor", "part": "bme280", "address": 0x77, "interval_s": 0.001}]},
            "sensors.indoor.interval_s 0.001 s is below 1 s",
        ),
        ({"outbox": {"drain_readings_per_s": 1e12}}, "drain_readings_per_s 1e+12 is outside 10..100000"),
        ({"outbox": {"drain_readings_per_s": 1e-6}}, "drain_readings_per_s 1e-06 is outside"),
    ],
)
def test_a_config_command_beyond_the_device_limits_is_refused(
    bme280_bus: EmulatedI2C, clock: FakeClock, tmp_path: Path, args: dict[str, object], error: str
) -> None:
    """Test that a config command may not set an unbounded backlog, a tiny interval or an absurd
    drain rate: the reply names the field, the limit and where to change it; nothing changes."""
    agent = _agent(bme280_bus, clock, tmp_path)
    before = agent.config
    reply = _cmd(agent, "config", args)
    assert reply["ok"] is False and error in str(reply["error"]), reply
    assert "config file" in str(reply["error"])
    assert agent.config is before and load_saved_device_config(tmp_path) is None


def test_limits_apply_to_what_the_command_changes_only(bme280_bus: EmulatedI2C, clock: FakeClock) -> None:
    """Test that a device whose own config file samples faster than a command may set still takes
    a calibration command (the limits bound the command, not the device)."""
    agent = _agent(bme280_bus, clock, publish_interval_s=0.2)
    calibration = [{"sensor": "indoor", "quantity": "temperature", "offset": 0.5, "version": 2}]
    reply = _cmd(agent, "config", {"calibration": calibration})
    assert reply["ok"] is True and agent.config.publish_interval_s == 0.2
    assert _cmd(agent, "config", {"publish_interval_s": 1})["ok"] is True


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"from": 0, "to": 1e12}, "covers at most 86400 s"),
        ({"from": 1_772_000_000, "to": 1_772_000_000 + 86_401}, "covers at most 86400 s"),
        ({"from": 0, "to": 10**400}, "must be a finite number"),
        ({"from": "yesterday", "to": 1}, "must be a number"),
    ],
)
def test_a_resend_beyond_one_day_is_refused(
    bme280_bus: EmulatedI2C, clock: FakeClock, args: dict[str, object], error: str
) -> None:
    """Test that one resend covers at most a day (a wider one would hold the publisher for hours):
    the reply says so and how to ask instead."""
    reply = _cmd(_agent(bme280_bus, clock), "resend", args)
    assert reply["ok"] is False and error in str(reply["error"]), reply


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b'{"id": "r1", "args": [1, 2]}', "args must be an object, got a JSON list"),
        (b'{"id": "r1", "args": {}, "argz": {}}', "unknown request keys 'argz'"),
        (b'{"id": "r1", "args": null}', "args must be an object"),
    ],
)
def test_a_request_with_an_id_gets_the_reason_in_its_reply(
    bme280_bus: EmulatedI2C, clock: FakeClock, payload: bytes, error: str
) -> None:
    """Test that a malformed request that still names its id is answered with what is wrong."""
    reply = run_command(_agent(bme280_bus, clock), "ping", payload)
    assert reply is not None and reply.id == "r1" and reply.ok is False
    assert reply.error is not None and error in reply.error


def test_a_request_without_an_id_is_counted_in_meta(bme280_bus: EmulatedI2C, clock: FakeClock) -> None:
    """Test that requests with nothing to reply to are counted (meta counters.bad_commands)."""
    agent = _agent(bme280_bus, clock)
    for payload in (b"not json", b"[]", b'{"args": {}}', b'{"id": 7}', b'{"id": ""}', b"[" * 100_000):
        assert run_command(agent, "ping", payload) is None
    assert agent.meta()["counters"]["bad_commands"] == 6
