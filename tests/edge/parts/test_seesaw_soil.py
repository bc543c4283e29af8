"""Tests of edge/parts/seesaw_soil: the real Adafruit seesaw driver on the emulated soil sensor."""

from __future__ import annotations

import itertools

import pytest
from adafruit_seesaw.seesaw import Seesaw  # type: ignore[import-untyped]

from edge.drivers import ReadContext, Reading, load_driver
from edge.emulated.bus import EmulatedI2C
from edge.parts.seesaw_soil.emulator import PRODUCT, SoilSensorEmulator, garden
from edge.scan import scan
from kits.errors import ConfigError, SensorError
from tests.edge.conftest import FakeClock, Targets

ADDRESS = 0x36


def _bus(
    targets: Targets, clock: FakeClock, address: int = ADDRESS
) -> tuple[EmulatedI2C, SoilSensorEmulator]:
    chip = SoilSensorEmulator(targets, clock=clock)
    return EmulatedI2C({address: chip}), chip


def test_the_adafruit_driver_sees_a_soil_sensor(clock: FakeClock) -> None:
    """Test that the library resets the chip, reads hardware id 0x55 and product 4026, and takes
    the SAMD09 pin map, as on the real board."""
    bus, chip = _bus(Targets(soil_moisture=812, temperature=21.5), clock)
    device = Seesaw(bus, addr=ADDRESS)
    assert chip.resets == 1
    assert device.chip_id == 0x55
    assert device.get_version() >> 16 == PRODUCT
    assert device.pin_mapping.__name__ == "SAMD09_Pinmap"
    assert device.moisture_read() == 812
    assert device.get_temp() == pytest.approx(21.5, abs=1 / 65536)


@pytest.mark.parametrize("address", [0x36, 0x37, 0x38, 0x39])
def test_the_part_reads_moisture_and_temperature_at_each_address(address: int, clock: FakeClock) -> None:
    """Test that the wrapped driver returns the soil's capacitance and the board's temperature."""
    targets = Targets(soil_moisture=1530, temperature=8.25)
    bus, _ = _bus(targets, clock, address)
    driver = load_driver("seesaw_soil").create(bus, address, {})
    reading = driver.read(ReadContext(time=clock.now))
    assert isinstance(reading, Reading)
    assert reading.values == {"soil_moisture": 1530.0, "temperature": pytest.approx(8.25, abs=1e-4)}
    targets["soil_moisture"] = 4095
    assert driver.read(ReadContext(time=clock.now)).values["soil_moisture"] == 4095.0  # type: ignore[union-attr]


def test_without_a_scenario_value_the_soil_dries_and_is_watered(clock: FakeClock) -> None:
    """Test that the emulated bed dries between waterings and is wet again after one."""
    bus, _ = _bus(Targets(temperature=15.0), clock)
    driver = load_driver("seesaw_soil").create(bus, ADDRESS, {})
    values = []
    for _ in range(6 * 24):
        values.append(driver.read(ReadContext(time=clock.now)).values["soil_moisture"])  # type: ignore[union-attr]
        clock.advance(3600.0)
    assert min(values) >= 350 and max(values) <= 1200
    drops = sum(1 for a, b in itertools.pairwise(values) if b < a)
    assert drops > 0.9 * len(values) - 4  # it dries every hour but the hours after a watering
    assert sum(1 for a, b in itertools.pairwise(values) if b > a + 300) == 2  # two waterings in 6 days
    assert garden(clock.now) == pytest.approx(values[-1], abs=200)


def test_another_seesaw_board_is_refused(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that a seesaw board that is not the soil sensor (another product) is refused with the fix."""
    monkeypatch.setattr("edge.parts.seesaw_soil.emulator.PRODUCT", 5296)
    bus, _ = _bus(Targets(), clock)
    with pytest.raises(SensorError, match=r"seesaw product 5296, not the soil sensor \(4026\)"):
        load_driver("seesaw_soil").create(bus, ADDRESS, {})
    assert scan(bus)[0].part is None


def test_nothing_at_the_address_or_options_are_refused(clock: FakeClock) -> None:
    """Test that an empty address is a wiring error and an option a config error."""
    bus, _ = _bus(Targets(), clock)
    with pytest.raises(SensorError, match=r"seesaw_soil at 0x37 did not answer.*wiring"):
        load_driver("seesaw_soil").create(bus, 0x37, {})
    with pytest.raises(ConfigError, match=r"takes no options"):
        load_driver("seesaw_soil").create(bus, ADDRESS, {"gain": 2})


def test_registers_the_board_lacks_are_not_answered(clock: FakeClock) -> None:
    """Test that a module the soil sensor has no firmware for (GPIO) is not acknowledged."""
    bus, _ = _bus(Targets(), clock)
    with pytest.raises(OSError, match=r"not fitted"):
        bus.writeto(ADDRESS, bytes([0x01, 0x04]))
