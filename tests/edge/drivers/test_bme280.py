"""Tests of edge/parts/bme280/driver.py: the wrapper over the real Adafruit driver, on an emulated bus."""

from __future__ import annotations

import pytest

from edge.drivers.base import ReadContext, Reading
from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.driver import INFO, create
from edge.parts.bme280.emulator import BMP280_CHIP_ID, Bme280Emulator
from kits.errors import ConfigError, SensorError
from tests.edge.conftest import FakeClock, Targets


def test_read_returns_plain_floats_of_its_quantities(bme280_bus: EmulatedI2C, targets: Targets) -> None:
    """Test that a read is a Reading of the INFO quantities, as floats, near the targets."""
    sensor = create(bme280_bus, 0x77, {})
    reading = sensor.read(ReadContext(time=0.0))
    assert isinstance(reading, Reading)
    assert tuple(reading.values) == INFO.quantity_names
    assert all(type(v) is float for v in reading.values.values())
    for qty, value in reading.values.items():
        assert value == pytest.approx(targets[qty], abs=0.1)


def test_nothing_at_the_address_says_what_to_do(bme280_bus: EmulatedI2C) -> None:
    """Test that a missing sensor raises SensorError naming part, address, wiring and scan."""
    with pytest.raises(SensorError) as caught:
        create(bme280_bus, 0x76, {})
    message = str(caught.value)
    assert "bme280 at 0x76 did not answer" in message
    assert "pins 3/5 (SDA/SCL)" in message
    assert "suitcase edge scan" in message
    assert not isinstance(caught.value, ValueError)


def test_a_sensor_unplugged_mid_run_raises_sensor_error(bme280_bus: EmulatedI2C) -> None:
    """Test that an OSError from a vanished chip is translated, and reads work once it is back."""
    sensor = create(bme280_bus, 0x77, {})
    chip = bme280_bus.detach(0x77)
    assert chip is not None
    with pytest.raises(SensorError, match="bme280 at 0x77 did not answer") as caught:
        sensor.read(ReadContext(time=0.0))
    assert isinstance(caught.value.__cause__, OSError)
    bme280_bus.attach(0x77, chip)
    assert isinstance(sensor.read(ReadContext(time=1.0)), Reading)


def test_a_bmp280_in_its_place_is_named(clock: FakeClock) -> None:
    """Test that a BMP280 (chip id 0x58) at a BME280's address is reported as such, with the fix."""
    bus = EmulatedI2C({0x77: Bme280Emulator(Targets(), clock=clock, chip_id=BMP280_CHIP_ID)})
    with pytest.raises(SensorError, match=r"not a BME280 \(chip id 0x58, bmp280 \(no humidity\)"):
        create(bus, 0x77, {})


def test_unknown_options_are_refused(bme280_bus: EmulatedI2C) -> None:
    """Test that the driver refuses options it does not know."""
    with pytest.raises(ConfigError, match="takes no options"):
        create(bme280_bus, 0x77, {"oversampling": 16})
