"""The sensor parts, one folder each, and their registry.

A part is one folder, ``edge/parts/<part>/``, holding ``driver.py`` (``INFO`` and ``create``),
``emulator.py`` (a register-level chip for the emulated bus) and ``facts.yaml`` (addresses, chip
id, quantities, warm-up, the library the driver wraps, datasheet, board, price, placement: see
:mod:`edge.parts._facts`). A new part is that folder plus one line in :data:`PARTS`. Everything
else (the driver and emulator registries, scan, verify, the hardware guide, the ``edge`` extra)
finds the part through that line. Modules are imported lazily, so an agent on a Pi imports only
its own sensors' drivers.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from edge.parts._facts import FACTS_FILE, PartFacts, load_facts
from kits.errors import ConfigError

__all__ = ["FACTS_FILE", "PARTS", "PartFacts", "facts_of", "part_dir", "part_module"]

# part name -> its package; the package holds driver.py, emulator.py and facts.yaml.
PARTS: dict[str, str] = {
    "ads1x15": "edge.parts.ads1x15",
    "bme280": "edge.parts.bme280",
    "lis3dh": "edge.parts.lis3dh",
    "pmsa003i": "edge.parts.pmsa003i",
    "scd30": "edge.parts.scd30",
    "scd4x": "edge.parts.scd4x",
    "seesaw_soil": "edge.parts.seesaw_soil",
    "sgp40": "edge.parts.sgp40",
    "sht4x": "edge.parts.sht4x",
    "veml7700": "edge.parts.veml7700",
    "vl53l1x": "edge.parts.vl53l1x",
}


def _unknown(part: str) -> ConfigError:
    return ConfigError(
        f"no part {part!r}: use one of {', '.join(sorted(PARTS))} (a new part is a folder "
        "edge/parts/<part>/ with driver.py, emulator.py and facts.yaml, and a line in edge.parts.PARTS)"
    )


def part_module(part: str, module: str) -> str:
    """Return the dotted path of ``module`` (``driver`` or ``emulator``) of ``part``.

    Raises:
        ConfigError: ``part`` is not registered.
    """
    package = PARTS.get(part)
    if package is None:
        raise _unknown(part)
    return f"{package}.{module}"


def part_dir(part: str) -> Path:
    """Return the folder of ``part``, without importing its driver.

    Raises:
        ConfigError: ``part`` is not registered, or its package cannot be found.
    """
    package = PARTS.get(part)
    if package is None:
        raise _unknown(part)
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"part {part!r} is registered as {package!r} in edge.parts.PARTS, but there is no such "
            "package: create the folder with an __init__.py or fix the line"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def facts_of(part: str) -> PartFacts:
    """Read and check the ``facts.yaml`` of ``part``.

    Raises:
        ConfigError: the part is unknown, or its facts are missing, invalid or contradictory; the
            message names the file, the field and the fix.
    """
    return load_facts(part_dir(part) / FACTS_FILE, part=part)
