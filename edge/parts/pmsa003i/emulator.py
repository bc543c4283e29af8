"""A Plantower PMSA003I on I2C, so the real Adafruit driver (``adafruit_pm25.i2c``) runs.

The part has no registers: every read returns its latest 32-byte frame (Plantower manual,
"Transport protocol - Active mode"): ``BM``, frame length 28, PM1.0/2.5/10 in CF=1 ("standard")
and atmospheric ("env") ug/m3, six particle counts per 0.1 L, a version and error byte, and a
16-bit sum of the first 30 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

__all__ = ["Pmsa003iEmulator", "create", "frame"]

_COUNT_KEYS = (
    "particles_03um",
    "particles_05um",
    "particles_10um",
    "particles_25um",
    "particles_50um",
    "particles_100um",
)


def _counts(pm1: float, pm25: float, pm10: float) -> list[float]:
    """Particle counts per 0.1 L roughly consistent with the mass concentrations."""
    return [
        pm1 * 160 + pm25 * 40,
        pm1 * 50 + pm25 * 12,
        pm25 * 9,
        (pm10 - pm25) * 2 + 1,
        (pm10 - pm25) * 0.4,
        (pm10 - pm25) * 0.1,
    ]


def frame(values: Mapping[str, float]) -> bytes:
    """Return the 32-byte frame a PMSA003I sends for ``values`` (ug/m3 and counts)."""
    pm1 = values.get("pm1_0", 3.0)
    pm25 = values.get("pm2_5", 5.0)
    pm10 = values.get("pm10", 8.0)
    derived = _counts(pm1, pm25, pm10)
    counts = [values.get(key, derived[i]) for i, key in enumerate(_COUNT_KEYS)]
    words = [pm1, pm25, pm10, pm1, pm25, pm10, *counts]
    body = (
        b"BM" + struct.pack(">H", 28) + struct.pack(">12H", *(max(0, min(0xFFFF, round(w))) for w in words))
    )
    body += bytes([0x97, 0x00])  # version, error code
    return body + struct.pack(">H", sum(body) & 0xFFFF)


class Pmsa003iEmulator:
    """A PMSA003I whose air follows ``values(now)`` (``pm1_0``, ``pm2_5``, ``pm10``, counts)."""

    def __init__(self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> None:
        self._values = values
        self._clock = clock
        self.frames = 0

    def write(self, data: bytes) -> None:
        """The part takes no commands over I2C; an empty write is an address probe."""

    def read(self, length: int) -> bytes:
        """Return the current frame (the part restarts it at each read transfer)."""
        self.frames += 1
        return frame(self._values(self._clock()))[:length].ljust(length, b"\x00")


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Pmsa003iEmulator:
    """Return a PMSA003I emulator driven by ``values``; the factory of the emulator registry."""
    return Pmsa003iEmulator(values, clock=clock)
