"""Tests of edge/scan.py: identifying parts on a bus by their chip-id register."""

from __future__ import annotations

from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.emulator import BMP280_CHIP_ID, Bme280Emulator
from edge.scan import Found, scan
from tests.edge.conftest import FakeClock, Targets
from tests.edge.emulated.test_bus import Echo


def test_scan_tells_bme280_from_bmp280_and_lists_unknown_addresses(clock: FakeClock) -> None:
    """Test that a BME280, a BMP280 and an unknown chip are each reported for what they are."""
    bus = EmulatedI2C(
        {
            0x77: Bme280Emulator(Targets(), clock=clock),
            0x76: Bme280Emulator(Targets(), clock=clock, chip_id=BMP280_CHIP_ID),
            0x40: Echo(),
        }
    )
    found = scan(bus)
    assert [f.address for f in found] == [0x40, 0x76, 0x77]
    assert found[0] == Found(0x40, None, "no known part uses this address")
    assert found[1].part is None
    assert "bmp280" in found[1].detail and "0x58" in found[1].detail
    assert found[2] == Found(0x77, "bme280", "chip id 0x60")


def test_scan_of_an_empty_bus_is_empty() -> None:
    """Test that nothing answering gives an empty list."""
    assert scan(EmulatedI2C()) == []
