"""A register-level Vishay VEML7700 ambient light sensor, so the real Adafruit driver runs.

Sixteen-bit little-endian registers (datasheet VEML7700 rev 1.6, table 1): 0x00 ALS_CONF (gain
bits 12:11, integration time bits 9:6, shutdown bit 0), 0x01/0x02 thresholds, 0x03 power saving,
0x04 ALS, 0x05 WHITE, 0x06 interrupt status, 0x07 ID (low byte 0x81). A write is the command code
then LSB, MSB; a read is the command code, a repeated start and LSB, MSB.

The ALS count for the scenario's ``illuminance`` is what the Adafruit driver's resolution and the
Vishay non-linearity correction turn back into that illuminance; a count above 65535 saturates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["DEVICE_ID", "Veml7700Emulator", "corrected_lux", "create", "resolution"]

DEVICE_ID = 0xC481  # slave-address option code 0xC4, device id 0x81
_GAINS = {0x0: 1.0, 0x1: 2.0, 0x2: 0.125, 0x3: 0.25}
_INTEGRATION_MS = {0xC: 25, 0x8: 50, 0x0: 100, 0x1: 200, 0x2: 400, 0x3: 800}


def resolution(conf: int) -> float:
    """Lux per count at the gain and integration time of ALS_CONF ``conf``."""
    gain = _GAINS[(conf >> 11) & 0x3]
    it = _INTEGRATION_MS.get((conf >> 6) & 0xF, 100)
    return 0.0042 * (800 / it) * (2 / gain)


def corrected_lux(lux: float) -> float:
    """Vishay's correction of the sensor's non-linearity above about 1000 lx (app note 84323)."""
    return (((6.0135e-13 * lux - 9.3924e-9) * lux + 8.1488e-5) * lux + 1.0023) * lux


def _uncorrect(target: float) -> float:
    lo, hi = 0.0, max(1.0, target * 2)
    for _ in range(60):
        mid = (lo + hi) / 2
        if corrected_lux(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class Veml7700Emulator:
    """A VEML7700 whose light follows ``values(now)`` (``illuminance`` in lx)."""

    def __init__(self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> None:
        self._values = values
        self._clock = clock
        self.regs = [0] * 8
        self.regs[0] = 0x0001  # shut down after power-on
        self.regs[7] = DEVICE_ID
        self._pointer = 0

    def write(self, data: bytes) -> None:
        """A command code, then optionally LSB, MSB of the register."""
        if not data:
            return
        self._pointer = data[0]
        if len(data) >= 3 and data[0] in (0x00, 0x01, 0x02, 0x03):
            self.regs[data[0]] = data[1] | data[2] << 8

    def read(self, length: int) -> bytes:
        """LSB, MSB of the register the last command code named."""
        reg = self._pointer
        if reg == 0x04:
            value = self._als()
        elif reg == 0x05:
            value = self._als() // 2
        else:
            value = self.regs[reg] if reg < len(self.regs) else 0
        return bytes([value & 0xFF, value >> 8])[:length].ljust(length, b"\x00")

    def _als(self) -> int:
        conf = self.regs[0]
        if conf & 0x1:
            return 0  # shut down: no conversion
        lux = max(0.0, self._values(self._clock()).get("illuminance", 300.0))
        counts = _uncorrect(lux) / resolution(conf)
        return min(0xFFFF, round(counts))


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Veml7700Emulator:
    """Return a VEML7700 emulator driven by ``values``; the factory of the emulator registry."""
    return Veml7700Emulator(values, clock=clock)
