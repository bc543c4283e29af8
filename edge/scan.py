"""Scan an I2C bus and tell which part answers at each address, by its chip-id register."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from edge.drivers import DRIVERS
from edge.drivers.base import DriverInfo, I2CBus

__all__ = ["Found", "identify", "scan"]


@dataclass(frozen=True, slots=True)
class Found:
    """An address that answered.

    Attributes:
        address: the 7-bit I2C address.
        part: the driver name of the part, or None when not identified.
        detail: what was seen, e.g. ``chip id 0x60`` or ``bmp280 (no humidity)``.
    """

    address: int
    part: str | None
    detail: str


def _infos() -> list[DriverInfo]:
    return [importlib.import_module(path).INFO for path in DRIVERS.values()]


def _lock(i2c: I2CBus) -> None:
    while not i2c.try_lock():
        pass


def _chip_id(i2c: I2CBus, address: int, register: int) -> int | None:
    buf = bytearray(1)
    _lock(i2c)
    try:
        i2c.writeto_then_readfrom(address, bytes([register]), buf)
    except OSError:
        return None
    finally:
        i2c.unlock()
    return buf[0]


def identify(i2c: I2CBus, address: int, infos: list[DriverInfo] | None = None) -> Found:
    """Identify the chip at ``address`` by the chip-id registers of the known drivers."""
    seen: list[str] = []
    for info in infos if infos is not None else _infos():
        if address not in info.addresses:
            continue
        if info.probe is not None:
            try:
                detail = info.probe(i2c, address)
            except OSError:
                detail = None
            if detail is not None:
                return Found(address, info.part, detail)
            seen.append(f"not a {info.part}")
            continue
        if info.chip_id_register is None:
            continue
        chip_id = _chip_id(i2c, address, info.chip_id_register)
        if chip_id is None:
            continue
        if chip_id == info.chip_id:
            return Found(address, info.part, f"chip id {chip_id:#04x}")
        if chip_id in info.look_alikes:
            seen.append(f"{info.look_alikes[chip_id]}, chip id {chip_id:#04x}: no driver")
        else:
            seen.append(f"register {info.chip_id_register:#04x} reads {chip_id:#04x}")
    return Found(address, None, "; ".join(seen) or "no known part uses this address")


def scan(i2c: I2CBus) -> list[Found]:
    """Return every address that answers on ``i2c``, identified where a driver knows the chip."""
    _lock(i2c)
    try:
        addresses = sorted(i2c.scan())
    finally:
        i2c.unlock()
    infos = _infos()
    return [identify(i2c, address, infos) for address in addresses]
