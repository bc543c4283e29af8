"""A register-level ST LIS3DH accelerometer, so the real Adafruit driver runs.

Byte registers (datasheet LIS3DH DocID17530, section 7): WHO_AM_I 0x0F = 0x33, CTRL_REG1 0x20
(data rate bits 7:4), CTRL_REG4 0x23 (full scale bits 5:4), CTRL_REG5 0x24 (bit 7 reboots),
STATUS_REG 0x27, OUT_X_L..OUT_Z_H 0x28..0x2D; bit 7 of the register address auto-increments.

Each read of the output block is the next sample at the output data rate: while the clock does
not move, the k-th read samples the scenario at ``now + k / rate``, so a burst read at the data
rate sees the vibration waveform as the chip would.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

__all__ = ["DIVIDERS", "RATES_HZ", "STANDARD_GRAVITY", "Lis3dhEmulator", "create"]

STANDARD_GRAVITY = 9.806
WHO_AM_I = 0x33
# CTRL_REG1 ODR bits -> samples per second (normal / high-resolution mode)
RATES_HZ = {1: 1.0, 2: 10.0, 3: 25.0, 4: 50.0, 5: 100.0, 6: 200.0, 7: 400.0, 9: 1344.0}
# CTRL_REG4 FS bits -> counts per g, as the Adafruit driver divides them
DIVIDERS = {0: 16380, 1: 8190, 2: 4096, 3: 1365}
_OUT_X_L = 0x28


class Lis3dhEmulator:
    """A LIS3DH whose motion follows ``values(now)`` (``acceleration_x/y/z`` in m/s2)."""

    def __init__(self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> None:
        self._values = values
        self._clock = clock
        self.regs = bytearray(0x40)
        self.regs[0x0F] = WHO_AM_I
        self.regs[0x20] = 0x07
        self._pointer = 0
        self._sample_clock: float | None = None
        self._k = 0
        self.samples = 0

    @property
    def rate_hz(self) -> float:
        return RATES_HZ.get(self.regs[0x20] >> 4, 0.0)

    def write(self, data: bytes) -> None:
        """A register address (bit 7: auto-increment), then values to write."""
        if not data:
            return
        self._pointer = data[0] & 0x7F
        for offset, value in enumerate(data[1:]):
            reg = self._pointer + offset
            if reg == 0x24 and value & 0x80:
                self.regs[0x20], self.regs[0x23] = 0x07, 0x00  # reboot: defaults
                value &= 0x7F
            if 0x1E <= reg <= 0x3F:
                self.regs[reg] = value

    def read(self, length: int) -> bytes:
        """Bytes from the register pointer; the output block yields the next sample."""
        start = self._pointer
        if start == _OUT_X_L and length >= 6:
            self._sample()
        if start <= 0x27 < start + length:
            self.regs[0x27] = 0x0F if self.rate_hz else 0x00
        return bytes(self.regs[start : start + length]).ljust(length, b"\x00")

    def _sample(self) -> None:
        now = self._clock()
        if now != self._sample_clock:
            self._sample_clock, self._k = now, 0
        rate = self.rate_hz or 1.0
        values = self._values(now + self._k / rate)
        self._k += 1
        self.samples += 1
        divider = DIVIDERS[(self.regs[0x23] >> 4) & 0x3]
        raw = [
            max(-32768, min(32767, round(values.get(axis, default) / STANDARD_GRAVITY * divider)))
            for axis, default in (
                ("acceleration_x", 0.0),
                ("acceleration_y", 0.0),
                ("acceleration_z", STANDARD_GRAVITY),
            )
        ]
        self.regs[_OUT_X_L : _OUT_X_L + 6] = struct.pack("<hhh", *raw)


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Lis3dhEmulator:
    """Return a LIS3DH emulator driven by ``values``; the factory of the emulator registry."""
    return Lis3dhEmulator(values, clock=clock)
