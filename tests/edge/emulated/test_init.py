"""Tests of edge/emulated/__init__.py: build_bus puts one emulated chip per configured sensor."""

from __future__ import annotations

import pytest
from adafruit_bme280.basic import Adafruit_BME280_I2C

from edge.emulated import build_bus, get_scenario
from kits.errors import ConfigError
from kits.models import DeviceSensor
from tests.edge.conftest import WEDNESDAY_10H, FakeClock


def test_build_bus_emulates_each_sensor_following_the_scenario() -> None:
    """Test that the real driver on a built bus reads the scenario's values at the clock's time."""
    clock = FakeClock(WEDNESDAY_10H)
    sensors = [
        DeviceSensor(name="indoor", part="bme280", address=0x77),
        DeviceSensor(name="window", part="bme280", address=0x76),
    ]
    bus = build_bus(sensors, "office-day", clock=clock, seed=4)
    assert bus.scan() == [0x76, 0x77]
    expected = get_scenario("office-day", seed=4)(clock.now)
    driver = Adafruit_BME280_I2C(bus, 0x76)
    assert driver.temperature == pytest.approx(expected["temperature"], abs=0.1)
    assert driver.pressure == pytest.approx(expected["pressure"], abs=0.1)


def test_build_bus_refuses_a_part_without_emulator() -> None:
    """Test that a part with no emulator fails with a ConfigError naming the sensor and the part."""
    sensors = [DeviceSensor(name="co2", part="scd41", address=0x62)]
    with pytest.raises(ConfigError, match=r"'co2'.*'scd41'.*bme280"):
        build_bus(sensors, "office-day", clock=FakeClock(), seed=0)


def test_build_bus_refuses_an_unknown_scenario() -> None:
    """Test that an unknown scenario fails before any chip is built."""
    with pytest.raises(ConfigError, match="office-day"):
        build_bus([], "street", clock=FakeClock(), seed=0)
