"""Tests of edge/parts/bme280/emulator.py: the REAL Adafruit driver reads back what the emulator is told."""

from __future__ import annotations

import struct

import pytest
from adafruit_bme280.basic import Adafruit_BME280_I2C
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.emulator import (
    BMP280_CHIP_ID,
    DEFAULT_TRIM,
    Bme280Emulator,
    compensate_humidity,
    compensate_pressure,
    compensate_t_fine,
)
from tests.edge.conftest import FakeClock, Targets

TOLERANCE = 0.1


def _driver(targets: Targets) -> Adafruit_BME280_I2C:
    bus = EmulatedI2C({0x77: Bme280Emulator(targets, clock=FakeClock())})
    return Adafruit_BME280_I2C(bus, 0x77)


@pytest.mark.parametrize("temperature", [-20.0, -5.3, 0.0, 12.7, 21.5, 38.2, 60.0])
@pytest.mark.parametrize(
    ("humidity", "pressure"), [(5.0, 700.0), (33.3, 870.5), (50.0, 1013.25), (72.9, 990.0), (95.0, 1100.0)]
)
def test_real_driver_reads_the_targets_across_the_range(
    temperature: float, humidity: float, pressure: float
) -> None:
    """Test that the Adafruit driver returns the targets within 0.1 Cel, %RH and hPa."""
    targets = Targets(temperature=temperature, humidity=humidity, pressure=pressure)
    driver = _driver(targets)
    assert driver.temperature == pytest.approx(temperature, abs=TOLERANCE)
    assert driver.relative_humidity == pytest.approx(humidity, abs=TOLERANCE)
    assert driver.pressure == pytest.approx(pressure, abs=TOLERANCE)


@settings(max_examples=150, deadline=None)
@given(
    temperature=st.floats(-40.0, 85.0),
    humidity=st.floats(0.0, 100.0),
    pressure=st.floats(300.0, 1100.0),
)
def test_real_driver_reads_any_target_in_the_operating_range(
    temperature: float, humidity: float, pressure: float
) -> None:
    """Test that over the BME280's whole operating range the driver reads each target within 0.1."""
    targets = Targets(temperature=temperature, humidity=humidity, pressure=pressure)
    driver = _driver(targets)
    assert abs(driver.temperature - temperature) <= TOLERANCE
    assert abs(driver.relative_humidity - humidity) <= TOLERANCE
    assert abs(driver.pressure - pressure) <= TOLERANCE


def test_each_conversion_asks_the_scenario_at_the_clock_time() -> None:
    """Test that a forced conversion samples the scenario at the clock's time, not at creation."""
    clock = FakeClock(1000.0)
    seen: list[float] = []

    def values(now: float) -> dict[str, float]:
        seen.append(now)
        return {"temperature": now / 100.0}

    bus = EmulatedI2C({0x77: Bme280Emulator(values, clock=clock)})
    driver = Adafruit_BME280_I2C(bus, 0x77)
    assert driver.temperature == pytest.approx(10.0, abs=TOLERANCE)
    clock.advance(1000.0)
    assert driver.temperature == pytest.approx(20.0, abs=TOLERANCE)
    assert seen[-1] == 2000.0


def test_registers_follow_the_datasheet_map() -> None:
    """Test chip id, trim blocks, and that soft reset restores the control registers."""
    chip = Bme280Emulator(Targets(), clock=FakeClock())
    chip.write(bytes([0xD0]))
    assert chip.read(1) == b"\x60"
    chip.write(bytes([0x88]))
    assert struct.unpack("<HhhHhhhhhhhh", chip.read(24))[:3] == (27504, 26435, -1000)
    chip.write(bytes([0xA1]))
    assert chip.read(1)[0] == DEFAULT_TRIM.h1
    chip.write(bytes([0xF2, 0x05, 0xF5, 0xA0]))  # two (register, value) pairs
    chip.write(bytes([0xF2]))
    assert chip.read(4) == bytes([0x05, 0x00, 0x00, 0xA0])  # ctrl_hum, status, ctrl_meas, config
    chip.write(bytes([0xE0, 0xB6]))
    chip.write(bytes([0xF2]))
    assert chip.read(4) == bytes(4)
    chip.write(bytes([0xF7]))
    assert chip.read(8) == bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])  # reset values: no conversion yet


def test_read_only_registers_ignore_writes() -> None:
    """Test that writing the chip id or the trim does not change them."""
    chip = Bme280Emulator(Targets(), clock=FakeClock())
    chip.write(bytes([0xD0, 0x00, 0x88, 0x00]))
    chip.write(bytes([0xD0]))
    assert chip.read(1) == b"\x60"


def test_the_driver_parses_the_humidity_trim_nibbles_back() -> None:
    """Test that H4 and H5, which share register 0xE5, survive the driver's unpacking."""
    driver = _driver(Targets())
    assert driver._humidity_calib == [
        DEFAULT_TRIM.h1,
        DEFAULT_TRIM.h2,
        DEFAULT_TRIM.h3,
        DEFAULT_TRIM.h4,
        DEFAULT_TRIM.h5,
        DEFAULT_TRIM.h6,
    ]


def test_a_bmp280_identity_is_refused_by_the_bme280_driver() -> None:
    """Test that with chip id 0x58 the real driver refuses the chip, as it would a real BMP280."""
    bus = EmulatedI2C({0x76: Bme280Emulator(Targets(), clock=FakeClock(), chip_id=BMP280_CHIP_ID)})
    with pytest.raises(RuntimeError, match="0x58"):
        Adafruit_BME280_I2C(bus, 0x76)


def test_compensation_is_monotonic_where_the_inversion_searches() -> None:
    """Test the premise of the bisection: temperature and humidity rise, pressure falls, with raw."""
    raws = range(200_000, 800_000, 50_000)
    fines = [compensate_t_fine(r, DEFAULT_TRIM) for r in raws]
    assert fines == sorted(fines)
    pressures = [compensate_pressure(r, 100_000, DEFAULT_TRIM) for r in raws]
    assert pressures == sorted(pressures, reverse=True)
    humidities = [compensate_humidity(r, 100_000, DEFAULT_TRIM) for r in range(20_000, 50_000, 2_000)]
    assert humidities == sorted(humidities)
