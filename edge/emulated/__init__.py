"""Register-level I2C emulators of the kit's parts, so the real Adafruit drivers run anywhere.

:func:`build_bus` turns a device's sensor list and a scenario into an :class:`EmulatedI2C` with
one emulated chip per sensor. Emulator modules are imported lazily from :data:`EMULATORS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from edge.emulated.bus import Chip, EmulatedI2C
from edge.emulated.scenarios import SCENARIOS, Scenario, get_scenario
from edge.emulated.tca9548a import Tca9548aEmulator
from edge.parts import PARTS, part_module
from kits.errors import ConfigError
from kits.models import DeviceSensor

__all__ = ["EMULATORS", "SCENARIOS", "Chip", "EmulatedI2C", "Scenario", "build_bus", "get_scenario"]

# part name -> module path; the module defines create(values, *, clock) -> Chip.
EMULATORS: dict[str, str] = {part: part_module(part, "emulator") for part in PARTS}


def build_bus(
    sensors: Sequence[DeviceSensor], scenario: str, *, clock: Callable[[], float], seed: int
) -> EmulatedI2C:
    """Return an emulated bus with one chip per sensor, all measuring ``scenario``.

    A sensor behind a multiplexer (``address: 0x70/3/0x77``) gets an emulated TCA9548A at the
    multiplexer's address, and its chip on that channel.

    Args:
        sensors: the sensors of a device config; each part needs an emulator.
        scenario: a name from :data:`SCENARIOS`.
        clock: the current epoch time, read by the chips at each conversion.
        seed: seeds the scenario's noise.

    Raises:
        ConfigError: an unknown scenario, or a part with no emulator.
    """
    values: Scenario = get_scenario(scenario, seed=seed)
    bus = EmulatedI2C()
    for sensor in sensors:
        path = EMULATORS.get(sensor.part)
        if path is None:
            raise ConfigError(
                f"sensor {sensor.name!r}: part {sensor.part!r} has no emulator: use one of "
                f"{', '.join(sorted(EMULATORS))} on the emulated bus"
            )
        module = importlib.import_module(path)
        chip: Chip = module.create(values, clock=clock)
        if sensor.mux is None:
            bus.attach(sensor.address, chip)
            continue
        if not isinstance(bus.chip_at(sensor.mux.address), Tca9548aEmulator):
            bus.attach(sensor.mux.address, Tca9548aEmulator())
        bus.attach_behind(sensor.mux.address, sensor.mux.channel, sensor.address, chip)
    return bus
