"""A register-level Adafruit STEMMA soil sensor (seesaw firmware on a SAMD09), so the real
Adafruit seesaw driver runs without hardware.

The seesaw protocol (Adafruit's "seesaw" firmware, as ``adafruit_seesaw.seesaw`` speaks it): a
write is a module base byte, a function register byte and any data; a read, after a write of
base and register and a short pause, returns that register's bytes. The soil sensor answers the
status module (0x00: hardware id 0x55 at 0x01, version at 0x02 with the product number 4026 in
its top 16 bits, options at 0x03, the chip's temperature at 0x04 as 16.16 fixed point, software
reset at 0x7F) and the touch module (0x0F, channel 0 at 0x10: the capacitance of the probe, about
200 in dry air to 2000 in wet soil, big-endian). Other modules are not fitted and not answered.

Without a ``soil_moisture`` value in its scenario, the emulated soil dries from wet (1200)
towards dry (350) over days and is watered every third morning at 07:00 UTC.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from collections.abc import Callable, Mapping

__all__ = ["HW_ID", "PRODUCT", "SoilSensorEmulator", "create"]

HW_ID = 0x55  # a SAMD09
PRODUCT = 4026  # Adafruit STEMMA soil sensor
_DATE_CODE = 0x2D31
_STATUS, _TOUCH = 0x00, 0x0F
_HW_ID_REG, _VERSION, _OPTIONS, _TEMP, _SWRST = 0x01, 0x02, 0x03, 0x04, 0x7F
_CHANNEL_0 = 0x10
_WET, _DRY, _DRYING_S, _WATERING_S = 1200.0, 350.0, 86400.0, 3 * 86400.0


def _nack(why: str) -> OSError:
    return OSError(errno.EREMOTEIO, f"{os.strerror(errno.EREMOTEIO)} ({why})")


def garden(now: float) -> float:
    """The capacitance of soil watered every third morning at 07:00 UTC and drying in between."""
    since = (now - 7 * 3600.0) % _WATERING_S
    return _DRY + (_WET - _DRY) * math.exp(-since / _DRYING_S)


class SoilSensorEmulator:
    """A soil sensor whose soil follows ``values(now)`` (``soil_moisture``, ``temperature``).

    Args:
        values: the scenario; without ``soil_moisture`` the soil follows :func:`garden`.
        clock: the current epoch time.
    """

    def __init__(self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> None:
        self._values = values
        self._clock = clock
        self._pointer: tuple[int, int] | None = None
        self.resets = 0

    def write(self, data: bytes) -> None:
        """A write transfer: module base, function register, data."""
        if not data:
            return  # an address probe
        if len(data) < 2:
            raise _nack("a seesaw write needs a module and a register")
        base, reg = data[0], data[1]
        if base == _STATUS and reg == _SWRST:
            if data[2:] != b"\xff":
                raise _nack("software reset takes the byte 0xff")
            self.resets += 1
            self._pointer = None
            return
        if (base, reg) not in {(_STATUS, r) for r in (_HW_ID_REG, _VERSION, _OPTIONS, _TEMP)} | {
            (_TOUCH, _CHANNEL_0)
        }:
            raise _nack(f"module {base:#04x} register {reg:#04x} is not fitted on the soil sensor")
        if len(data) > 2:
            raise _nack(f"register {base:#04x}/{reg:#04x} is read-only")
        self._pointer = (base, reg)

    def read(self, length: int) -> bytes:
        """A read transfer: the bytes of the register last written."""
        if self._pointer is None:
            raise _nack("read without a register: write module and register first")
        base, reg = self._pointer
        if base == _TOUCH:
            out = struct.pack(">H", self._capacitance())
        elif reg == _HW_ID_REG:
            out = bytes([HW_ID])
        elif reg == _VERSION:
            out = struct.pack(">I", PRODUCT << 16 | _DATE_CODE)
        elif reg == _OPTIONS:
            out = struct.pack(">I", 1 << _STATUS | 1 << _TOUCH)
        else:
            temperature = self._values(self._clock()).get("temperature", 18.0)
            out = struct.pack(">I", max(0, round(temperature * 65536.0)) & 0x3FFFFFFF)
        return out[:length].ljust(length, b"\xff")

    def _capacitance(self) -> int:
        now = self._clock()
        value = self._values(now).get("soil_moisture")
        return max(0, min(4095, round(garden(now) if value is None else value)))


def create(
    values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]
) -> SoilSensorEmulator:
    """Return a soil sensor emulator driven by ``values``; the factory of the emulator registry."""
    return SoilSensorEmulator(values, clock=clock)
