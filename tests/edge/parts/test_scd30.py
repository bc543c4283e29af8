"""Tests of edge/parts/scd30: the real Adafruit SCD30 driver on the emulated SCD30 command set."""

from __future__ import annotations

import adafruit_scd30  # type: ignore[import-untyped]
import pytest

from edge.drivers import NotReady, ReadContext, Reading, load_driver
from edge.emulated.bus import EmulatedI2C
from edge.parts.scd30.emulator import Scd30Emulator
from edge.scan import scan
from kits.errors import ConfigError, SensorError
from tests.edge.conftest import FakeClock, Targets

ADDRESS = 0x61


def _bus(targets: Targets, clock: FakeClock) -> tuple[EmulatedI2C, Scd30Emulator]:
    chip = Scd30Emulator(targets, clock=clock)
    return EmulatedI2C({ADDRESS: chip}), chip


def test_the_adafruit_driver_reads_floats_every_interval(clock: FakeClock) -> None:
    """Test that the library starts continuous measurement, sees data ready only after each 2 s
    interval, and decodes the three CRC-checked floats."""
    targets = Targets(co2=1234.5, temperature=22.25, humidity=41.0)
    bus, chip = _bus(targets, clock)
    device = adafruit_scd30.SCD30(bus, address=ADDRESS)
    assert chip.measuring and chip.pressure_mbar == 0
    assert device.measurement_interval == 2
    assert device.firmware_version == "3.66"
    assert not device.data_available
    clock.advance(2.0)
    assert device.data_available
    assert pytest.approx(1234.5) == device.CO2
    assert (device.temperature, device.relative_humidity) == (pytest.approx(22.25), pytest.approx(41.0))
    assert not device.data_available  # read once, until the next interval
    device.measurement_interval = 5
    device.altitude = 120
    device.temperature_offset = 1.5
    assert (device.measurement_interval, device.altitude, device.temperature_offset) == (5, 120, 1.5)


def test_the_part_waits_for_its_first_measurement_then_reads(clock: FakeClock) -> None:
    """Test that the wrapped driver says not ready before the first interval, then reads all three."""
    bus, _ = _bus(Targets(co2=812.0, temperature=20.5, humidity=48.0), clock)
    driver = load_driver("scd30").create(bus, ADDRESS, {})
    assert isinstance(driver.read(ReadContext(time=clock.now)), NotReady)
    clock.advance(2.0)
    reading = driver.read(ReadContext(time=clock.now))
    assert isinstance(reading, Reading)
    assert reading.values == {"co2": 812.0, "temperature": 20.5, "humidity": 48.0}


def test_a_neighbours_pressure_compensates_the_co2(clock: FakeClock) -> None:
    """Test that a neighbour's air pressure is sent to the part (0x0010 with the pressure in mbar)."""
    bus, chip = _bus(Targets(co2=600.0), clock)
    driver = load_driver("scd30").create(bus, ADDRESS, {"altitude_m": 40, "self_calibration": False})
    assert (chip.altitude_m, chip.self_calibration) == (40, False)
    clock.advance(2.0)
    driver.read(ReadContext(time=clock.now, neighbours={"climate": {"pressure": 987.6}}))
    assert chip.pressure_mbar == 988


def test_a_corrupt_word_is_a_sensor_error_and_the_next_read_recovers(clock: FakeClock) -> None:
    """Test that a CRC failure names the cable fix, and the next measurement is read."""
    bus, _ = _bus(Targets(co2=700.0), clock)
    driver = load_driver("scd30").create(bus, ADDRESS, {})
    clock.advance(2.0)
    bus.corrupt(ADDRESS)
    with pytest.raises(SensorError, match=r"scd30 at 0x61 returned corrupt data.*cable"):
        driver.read(ReadContext(time=clock.now))
    clock.advance(2.0)
    assert isinstance(driver.read(ReadContext(time=clock.now)), Reading)


def test_scan_names_it_by_its_firmware(clock: FakeClock) -> None:
    """Test that a scan identifies the SCD30 by its firmware version command."""
    bus, _ = _bus(Targets(), clock)
    (found,) = scan(bus)
    assert (found.address, found.part, found.detail) == (ADDRESS, "scd30", "firmware 3.66")


def test_bad_options_and_an_empty_address_are_refused(clock: FakeClock) -> None:
    """Test that an unknown option is a config error and an empty address a wiring error."""
    bus, _ = _bus(Targets(), clock)
    with pytest.raises(ConfigError, match=r"unknown options \['interval'\]"):
        load_driver("scd30").create(bus, ADDRESS, {"interval": 5})
    with pytest.raises(SensorError, match=r"scd30 at 0x62 did not answer"):
        load_driver("scd30").create(bus, 0x62, {})
