"""Tests of edge/drivers/__init__.py: the lazily imported driver registry, derived from edge.parts."""

from __future__ import annotations

import pytest

from edge.drivers import DRIVERS, load_driver
from kits.errors import ConfigError
from kits.quantities import QUANTITIES


def test_load_driver_returns_info_and_factory() -> None:
    """Test that a registered part loads with its INFO and create()."""
    driver = load_driver("bme280")
    assert driver.info.part == "bme280"
    assert driver.info.addresses == (0x77, 0x76)
    assert callable(driver.create)


@pytest.mark.parametrize("part", sorted(DRIVERS))
def test_every_driver_declares_registered_quantities(part: str) -> None:
    """Test that each driver's quantities and units are those of kits.quantities."""
    info = load_driver(part).info
    assert info.part == part
    for qty in info.quantities:
        assert QUANTITIES[qty.name] == qty
    assert info.min_interval_s > 0


def test_an_unknown_part_names_the_known_ones() -> None:
    """Test that an unknown part fails with a ConfigError listing the parts that exist."""
    with pytest.raises(ConfigError) as caught:
        load_driver("bme208")
    message = str(caught.value)
    assert "'bme208'" in message
    for part in DRIVERS:
        assert part in message
