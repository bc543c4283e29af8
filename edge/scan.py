"""Scan an I2C bus and tell which part answers at each address, by its chip-id register.

A TCA9548A multiplexer found on the bus is scanned too, channel by channel, through the real
Adafruit driver: what answers behind it is reported with its path (``0x70/3/0x77``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from edge.drivers import DRIVERS
from edge.drivers.base import DriverInfo, I2CBus
from kits.models import MUX_ADDRESSES, MuxPort

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
    mux: MuxPort | None = None

    @property
    def path(self) -> str:
        """``0x77``, or ``0x70/3/0x77`` behind channel 3 of the multiplexer at 0x70."""
        return f"{self.mux}/{self.address:#04x}" if self.mux is not None else f"{self.address:#04x}"


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


MUX_PART = "tca9548a"


def scan(i2c: I2CBus) -> list[Found]:
    """Return every address that answers on ``i2c``, identified where a driver knows the chip.

    Behind each TCA9548A multiplexer found, each of its eight channels is scanned in turn; what
    answers there is listed after the multiplexer, with its path.
    """
    _lock(i2c)
    try:
        addresses = sorted(i2c.scan())
    finally:
        i2c.unlock()
    infos = _infos()
    out: list[Found] = []
    for address in addresses:
        found = identify(i2c, address, infos)
        if found.part is None and address in MUX_ADDRESSES and _is_mux(i2c, address):
            out.append(Found(address, MUX_PART, "TCA9548A multiplexer, channels 0 to 7"))
            out += _behind(i2c, address, set(addresses), infos)
        else:
            out.append(found)
    return out


def _is_mux(i2c: I2CBus, address: int) -> bool:
    """Whether ``address`` holds a TCA9548A: its one register reads back what was written."""
    _lock(i2c)
    try:
        seen = []
        for mask in (0x05, 0x00):
            buf = bytearray(1)
            i2c.writeto(address, bytes([mask]))
            i2c.readfrom_into(address, buf)
            seen.append(buf[0])
    except OSError:
        return False
    finally:
        i2c.unlock()
    return seen == [0x05, 0x00]


def _behind(i2c: I2CBus, mux: int, on_the_bus: set[int], infos: list[DriverInfo]) -> list[Found]:
    import adafruit_tca9548a  # type: ignore[import-untyped]

    tca = adafruit_tca9548a.TCA9548A(i2c, address=mux)
    out: list[Found] = []
    for number in range(8):
        channel: I2CBus = tca[number]
        _lock(channel)
        try:
            addresses = sorted(set(channel.scan()) - on_the_bus)
        finally:
            channel.unlock()
        port = MuxPort(address=mux, channel=number)
        for address in addresses:
            found = identify(channel, address, infos)
            out.append(Found(address, found.part, found.detail, port))
    return out
