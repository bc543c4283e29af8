"""A register-level ST VL53L1X time-of-flight ranger, so the real Adafruit driver runs.

Sixteen-bit register addresses, big-endian, auto-incrementing (ST UM2356 / the VL53L1X ULD
register map): the model id at 0x010F (0xEA, 0xCC, 0x10), SYSTEM__MODE_START (0x0087: 0x40
ranging, 0x00 stopped), SYSTEM__INTERRUPT_CLEAR (0x0086), GPIO_HV_MUX__CTRL (0x0030, bit 4 the
interrupt polarity), GPIO__TIO_HV_STATUS (0x0031, bit 0 the new-data flag), RESULT__RANGE_STATUS
(0x0089, 0x09 a valid range) and the range in mm at 0x0096.

While ranging, a new range is ready at once after the start and then whenever the clock has
moved on since the interrupt was last cleared (the part ranges every timing budget, 50 ms).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["MAX_RANGE_MM", "Vl53l1xEmulator", "create"]

MAX_RANGE_MM = 4000
_MODEL_ID = 0x010F
_GPIO_HV_MUX = 0x0030
_GPIO_STATUS = 0x0031
_INTERRUPT_CLEAR = 0x0086
_MODE_START = 0x0087
_RANGE_STATUS = 0x0089
_RANGE_MM = 0x0096
_STATUS_VALID = 0x09
_STATUS_NO_TARGET = 0x02  # "signal fail": nothing in range


class Vl53l1xEmulator:
    """A VL53L1X whose target follows ``values(now)`` (``distance`` in mm)."""

    def __init__(self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> None:
        self._values = values
        self._clock = clock
        self.mem = bytearray(0x0200)
        self.mem[_MODEL_ID : _MODEL_ID + 3] = bytes([0xEA, 0xCC, 0x10])
        self.mem[0x004B] = 0x0A  # PHASECAL_CONFIG__TIMEOUT_MACROP: long distance mode
        self._pointer = 0
        self._cleared_at: float | None = None
        self.ranges = 0

    @property
    def ranging(self) -> bool:
        return self.mem[_MODE_START] == 0x40

    def _ready(self) -> bool:
        return self.ranging and (self._cleared_at is None or self._clock() > self._cleared_at)

    def write(self, data: bytes) -> None:
        """A 16-bit register address, then bytes to write from there on."""
        if len(data) < 2:
            return  # an address probe
        self._pointer = data[0] << 8 | data[1]
        for offset, value in enumerate(data[2:]):
            reg = self._pointer + offset
            if reg == _INTERRUPT_CLEAR and value & 0x01:
                self._cleared_at = self._clock()
                continue
            if reg == _MODE_START and value == 0x40:
                self._cleared_at = None
            if reg < len(self.mem) and not _MODEL_ID <= reg < _MODEL_ID + 3:
                self.mem[reg] = value

    def read(self, length: int) -> bytes:
        """Bytes from the register pointer on."""
        start = self._pointer
        if start <= _GPIO_STATUS < start + length:
            active = 0 if self.mem[_GPIO_HV_MUX] & 0x10 else 1
            self.mem[_GPIO_STATUS] = active if self._ready() else active ^ 1
        if start <= _RANGE_STATUS < start + length or start <= _RANGE_MM < start + length:
            self._range()
        self._pointer = start + length
        return bytes(self.mem[start : start + length]).ljust(length, b"\x00")

    def _range(self) -> None:
        self.ranges += 1
        mm = round(self._values(self._clock()).get("distance", 1000.0))
        if 0 < mm <= MAX_RANGE_MM:
            self.mem[_RANGE_STATUS] = _STATUS_VALID
            self.mem[_RANGE_MM : _RANGE_MM + 2] = mm.to_bytes(2, "big")
        else:
            self.mem[_RANGE_STATUS] = _STATUS_NO_TARGET
            self.mem[_RANGE_MM : _RANGE_MM + 2] = b"\x00\x00"


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Vl53l1xEmulator:
    """Return a VL53L1X emulator driven by ``values``; the factory of the emulator registry."""
    return Vl53l1xEmulator(values, clock=clock)
