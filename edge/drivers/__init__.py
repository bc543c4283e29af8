"""The driver contract and the driver registry.

Each part's driver is ``edge/parts/<part>/driver.py``; :data:`DRIVERS` is derived from the one
registry line of each part in :data:`edge.parts.PARTS`. Modules are imported lazily, so an agent
on a Pi imports only the drivers of its own sensors.
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
from edge.parts import PARTS, part_module
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
DRIVERS: dict[str, str] = {part: part_module(part, "driver") for part in PARTS}


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
            "(a new part is a folder edge/parts/<part>/ and a line in edge.parts.PARTS)"
        )
    module: ModuleType = importlib.import_module(path)
    return DriverModule(info=module.INFO, create=module.create)
