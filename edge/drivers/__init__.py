"""Sensor drivers, one module per part, and their registry.

A new part is one new module plus one line in :data:`DRIVERS`. Modules are imported lazily, so
an agent on a Pi imports only the drivers of its own sensors.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from edge.drivers.base import (
    Driver,
    DriverFactory,
    DriverInfo,
    I2CBus,
    NotReady,
    ReadContext,
    Reading,
)
from kits.errors import ConfigError

__all__ = [
    "DRIVERS",
    "Driver",
    "DriverFactory",
    "DriverInfo",
    "DriverModule",
    "I2CBus",
    "NotReady",
    "ReadContext",
    "Reading",
    "load_driver",
]

# part name -> module path; the module defines INFO and create().
DRIVERS: dict[str, str] = {
    "bme280": "edge.drivers.bme280",
    "sht4x": "edge.drivers.sht4x",
    "scd4x": "edge.drivers.scd4x",
    "sgp40": "edge.drivers.sgp40",
    "pmsa003i": "edge.drivers.pmsa003i",
    "veml7700": "edge.drivers.veml7700",
    "vl53l1x": "edge.drivers.vl53l1x",
    "lis3dh": "edge.drivers.lis3dh",
    "ads1x15": "edge.drivers.ads1x15",
}


@dataclass(frozen=True, slots=True)
class DriverModule:
    """A loaded driver: its description and its factory."""

    info: DriverInfo
    create: DriverFactory


def load_driver(part: str) -> DriverModule:
    """Import the driver of ``part``.

    Raises:
        ConfigError: no driver is registered for ``part``; the message lists the known parts.
    """
    path = DRIVERS.get(part)
    if path is None:
        raise ConfigError(
            f"no driver for part {part!r}: use one of {', '.join(sorted(DRIVERS))} "
            "(a new part needs a module in edge/drivers/ and a line in edge.drivers.DRIVERS)"
        )
    module: ModuleType = importlib.import_module(path)
    return DriverModule(info=module.INFO, create=module.create)
