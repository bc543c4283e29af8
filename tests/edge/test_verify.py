"""Tests of kit verification (edge/verify.py, `suitcase kit verify`): every failure is found and
comes with its fix. The bus is the register-level emulator (no Pi here); the broker is a real
Mosquitto with passwords."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.emulated import build_bus
from edge.emulated.bus import EmulatedI2C
from edge.parts.scd4x import emulator as scd4x_emulator
from edge.verify import (
    PartHint,
    Report,
    check_broker,
    check_clock,
    check_server,
    expected_sensors,
    verify,
)
from kits.catalog import load_catalog
from kits.models import DeviceSensor, KitProfile, MqttSettings
from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from suitcase.hardware_docs import load_part_facts
from suitcase.kit_cli import app
from tests.services import require_service

START = 1_750_000_000.0


class FakeClock:
    """Time that sleeping advances at once: warm-ups cost no wall time."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def hints() -> dict[str, PartHint]:
    """The cable tags and address how-tos of the parts' facts, as the CLI passes them."""
    return {
        part: PartHint(name=f.name.split(" (")[0], cable=f.cable_label, addresses=dict(f.addresses))
        for part, f in load_part_facts().items()
    }


def _profile(kit: str) -> KitProfile:
    return load_catalog().kit_profiles[kit]


def _run(
    bus: EmulatedI2C,
    expected: list[DeviceSensor],
    clock: FakeClock,
    hints: Mapping[str, PartHint],
    *,
    synced: bool = True,
    broker: str | None = None,
    status: int = 200,
) -> Report:
    return verify(
        bus,
        expected,
        hints=hints,
        mqtt=MqttSettings(host="127.0.0.1", port=1883, username="dev", password="pw"),
        server="http://server.example",
        clock_synced=lambda: synced,
        connect=lambda settings, client_id, timeout: broker,
        fetch=lambda url, timeout: status,
        clock=clock,
        sleep=clock.sleep,
    )


def _failed(report: Report) -> dict[str, str]:
    return {f"{c.group}: {c.detail}": c.fix for c in report.failures}


def test_a_complete_full_kit_passes_every_check(hints: dict[str, PartHint]) -> None:
    """Test that the full suitcase on an emulated bus passes: every part found and read plausibly
    within its warm-up (SCD4x 5 s, PMSA003I 30 s, SGP40's 45 learning samples) on a fast clock."""
    clock = FakeClock()
    expected = expected_sensors(None, _profile("full"))
    report = _run(build_bus(expected, "office-day", clock=clock, seed=1), expected, clock, hints)
    assert report.ok, _failed(report)
    readings = [c for c in report.checks if c.group == "reading"]
    assert len(readings) == len(expected) and all(c.outcome == "ok" for c in readings)
    assert clock.now - START < 120  # warm-ups waited on the fake clock only


def test_a_missing_sensor_names_its_cable(hints: dict[str, PartHint]) -> None:
    """Test that an unplugged SCD4x fails with "SCD4x not found at 0x62" and "reseat the cable
    marked CO2", and the other sensors still pass."""
    clock = FakeClock()
    expected = expected_sensors(None, _profile("full"))
    bus = build_bus(expected, "office-day", clock=clock, seed=1)
    bus.detach(0x62)
    report = _run(bus, expected, clock, hints)
    assert not report.ok
    [failure] = report.failures
    assert failure.detail == "SCD4x not found at 0x62"
    assert "reseat the cable marked CO2" in failure.fix


def test_a_sensor_at_the_wrong_address_says_how_to_set_it(hints: dict[str, PartHint]) -> None:
    """Test that a BME280 answering at 0x76 instead of 0x77 is a wrong-address failure whose fix
    tells the jumper and the config alternative."""
    clock = FakeClock()
    expected = expected_sensors(None, _profile("starter"))
    bus = build_bus(expected, "office-day", clock=clock, seed=1)
    chip = bus.detach(0x77)
    assert chip is not None
    bus.attach(0x76, chip)
    report = _run(bus, expected, clock, hints)
    [failure] = report.failures
    assert failure.detail == "BME280 found at 0x76, not at 0x77"
    assert "set the board to 0x77" in failure.fix and "0x76 in the device config" in failure.fix


def test_another_chip_at_the_address_is_not_taken_for_the_sensor(hints: dict[str, PartHint]) -> None:
    """Test that an SCD4x plugged where the kit expects a BME280 fails as the wrong part, and the
    SCD4x is not read as if it were a BME280."""
    clock = FakeClock()
    expected = expected_sensors(None, _profile("starter"))
    bus = EmulatedI2C()
    bus.attach(0x77, scd4x_emulator.create(lambda now: {"co2": 600.0}, clock=clock))
    report = _run(bus, expected, clock, hints)
    [failure] = report.failures
    assert failure.group == "bus" and "not BME280" in failure.detail


def test_an_implausible_reading_fails_and_is_not_trusted(hints: dict[str, PartHint]) -> None:
    """Test that a BME280 reading 187 °C (an emulator fed nonsense) fails as implausible, with the
    physical range and a fix to replace the part."""
    clock = FakeClock()
    expected = expected_sensors(None, _profile("starter"))

    def nonsense(now: float) -> dict[str, float]:
        return {"temperature": 500.0, "humidity": 150.0, "pressure": 5000.0}

    from edge.parts.bme280 import emulator as bme280_emulator

    bus = EmulatedI2C({0x77: bme280_emulator.create(nonsense, clock=clock)})
    report = _run(bus, expected, clock, hints)
    [failure] = report.failures
    assert failure.group == "reading" and failure.detail.startswith("implausible: temperature = 187")
    assert "possible: -60..125 Cel" in failure.detail
    assert "replace it" in failure.fix


def test_a_dead_bus_fails_with_the_i2c_fix(hints: dict[str, PartHint]) -> None:
    """Test that a bus that cannot be scanned (I2C not enabled) fails with how to enable it."""
    clock = FakeClock()
    bus = EmulatedI2C()
    bus.deinit()
    report = _run(bus, expected_sensors(None, _profile("starter")), clock, hints)
    [failure] = report.failures
    assert "raspi-config" in failure.fix


def test_an_unexpected_chip_is_a_warning_not_a_failure(hints: dict[str, PartHint]) -> None:
    """Test that a chip the kit does not expect is reported as a warning and verification passes."""
    clock = FakeClock()
    expected = expected_sensors(None, _profile("starter"))
    bus = build_bus(expected, "office-day", clock=clock, seed=1)
    bus.attach(0x62, scd4x_emulator.create(lambda now: {"co2": 600.0}, clock=clock))
    report = _run(bus, expected, clock, hints)
    assert report.ok
    assert [c.name for c in report.checks if c.outcome == "warn"] == ["scd4x at 0x62"]


def test_clock_not_synced_fails_with_the_ntp_fix() -> None:
    """Test that an unsynced clock fails and says readings wait on the Pi, and how to fix it."""
    check = check_clock(lambda: False)
    assert check.outcome == "fail" and "not sent until it is" in check.detail and "NTP" in check.fix
    assert check_clock(lambda: True).outcome == "ok"


def test_server_unreachable_and_unwell_are_failures() -> None:
    """Test that a server that does not answer, or answers 500, fails; a 200 passes."""
    down = check_server(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert down.outcome == "fail" and "cannot reach" in down.detail
    assert check_server("http://x", fetch=lambda url, t: 500).detail.endswith("HTTP 500")
    assert check_server("http://x", fetch=lambda url, t: 200).outcome == "ok"
    assert check_server(None).outcome == "skip"


def test_broker_unreachable_is_told_apart_from_refused() -> None:
    """Test that a port nobody listens on is "cannot reach the broker", with the network fix."""
    settings = MqttSettings(host="127.0.0.1", port=free_port(), username="dev", password="pw")
    check = check_broker(settings, "verify-test", timeout=2)
    assert check.outcome == "fail" and check.detail.startswith("cannot reach the broker")
    assert "network" in check.fix


@pytest.fixture()
def password_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A real Mosquitto that knows one user, ``pi-1`` with password ``right``."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto mosquitto-clients")
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "pi-1", "right"], check=True)
    broker = MosquittoBroker(
        tmp_path / "mosquitto", allow_anonymous=False, extra_config=f"password_file {passwords}\n"
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.mosquitto
def test_wrong_credentials_are_refused_and_said_so(password_broker: MosquittoBroker) -> None:
    """Test against a real Mosquitto that the device's right password connects and a wrong one is
    reported as refused credentials (re-bind the Pi), not as an unreachable broker."""
    good = MqttSettings(
        host=password_broker.host, port=password_broker.port, username="pi-1", password="right"
    )
    assert check_broker(good, "verify-good").outcome == "ok"
    bad = good.model_copy(update={"password": "wrong"})
    check = check_broker(bad, "verify-bad")
    assert check.outcome == "fail" and check.detail.startswith("the broker refused the device's credentials")
    assert "bind this Pi again" in check.fix


def test_cli_exits_non_zero_and_prints_the_fix(tmp_path: Path) -> None:
    """Test that `suitcase kit verify --config` on an emulated device whose broker is down exits 1
    with the checklist, and that a plain `--emulated --kit starter` passes its sensor checks."""
    config = tmp_path / "edge.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        "[device]\n"
        'device = "verify-pi-1"\norg = "aarhus"\nkit_profile = "starter"\nbus = "emulated"\n'
        f'mqtt = {{ host = "127.0.0.1", port = {free_port()}, username = "verify-pi-1", password = "x" }}\n'
        "[[device.sensors]]\n"
        'name = "bme280"\npart = "bme280"\naddress = 0x77\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "--config", str(config)], env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    assert "cannot reach the broker" in result.output and "check(s) failed" in result.output
    assert "BME280 found at 0x77" in result.output

    result = runner.invoke(app, ["verify", "--emulated", "--kit", "starter"], env={"COLUMNS": "250"})
    assert "reading: bme280" in result.output and "temperature" in result.output
    assert "FAIL" not in result.output.split("server:")[0]
