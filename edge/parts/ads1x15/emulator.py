"""A register-level TI ADS1115 (or ADS1015) ADC, so the real Adafruit driver runs.

Four 16-bit big-endian registers (datasheet SBAS444, section 9.6): conversion (0x00), config
(0x01, reset value 0x8583), lo_thresh (0x02, 0x8000) and hi_thresh (0x03, 0x7FFF). Writing the
config with OS set in single-shot mode converts the input the MUX bits select at the PGA's full
scale; the conversion is complete at once (OS reads 1). The ADS1015 is 12-bit, left-justified.

The inputs follow the scenario's ``voltage_a0`` .. ``voltage_a3``. Conversions while the clock
does not move sample at ``now + k / data rate``, so a burst (a current clamp's RMS) sees the
waveform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["CONFIG_RESET", "Ads1x15Emulator", "create"]

CONFIG_RESET = 0x8583
_FSR = {0: 6.144, 1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512, 5: 0.256, 6: 0.256, 7: 0.256}
_RATES_1115 = (8, 16, 32, 64, 128, 250, 475, 860)
_RATES_1015 = (128, 250, 490, 920, 1600, 2400, 3300, 3300)
_DIFFERENTIAL = {0: (0, 1), 1: (0, 3), 2: (1, 3), 3: (2, 3)}


class Ads1x15Emulator:
    """An ADS1115 (``bits=16``) or ADS1015 (``bits=12``) reading ``values(now)``."""

    def __init__(
        self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float], bits: int = 16
    ) -> None:
        self._values = values
        self._clock = clock
        self.bits = bits
        self.regs = [0x0000, CONFIG_RESET, 0x8000, 0x7FFF]
        self._pointer = 0
        self._sample_clock: float | None = None
        self._k = 0
        self.conversions = 0

    def write(self, data: bytes) -> None:
        """A pointer byte, then optionally the register's MSB and LSB."""
        if not data:
            return
        self._pointer = data[0] & 0x03
        if len(data) >= 3:
            value = data[1] << 8 | data[2]
            if self._pointer == 0x01:
                self._configure(value)
            elif self._pointer in (0x02, 0x03):
                self.regs[self._pointer] = value

    def read(self, length: int) -> bytes:
        """MSB, LSB of the register the pointer selects."""
        value = self.regs[self._pointer]
        return bytes([value >> 8, value & 0xFF])[:length].ljust(length, b"\x00")

    def _configure(self, config: int) -> None:
        single = bool(config & 0x0100)
        if not single or config & 0x8000:
            self._convert(config)
        self.regs[1] = config | 0x8000  # conversion done (in continuous mode OS reads 1 too)

    def _convert(self, config: int) -> None:
        now = self._clock()
        if now != self._sample_clock:
            self._sample_clock, self._k = now, 0
        rates = _RATES_1115 if self.bits == 16 else _RATES_1015
        rate = rates[(config >> 5) & 0x7]
        values = self._values(now + self._k / rate)
        self._k += 1
        self.conversions += 1
        mux = (config >> 12) & 0x7

        def volts(channel: int) -> float:
            return values.get(f"voltage_a{channel}", 0.0)

        if mux >= 4:
            v = volts(mux - 4)
        else:
            pos, neg = _DIFFERENTIAL[mux]
            v = volts(pos) - volts(neg)
        fsr = _FSR[(config >> 9) & 0x7]
        raw = max(-32768, min(32767, int(v / (fsr / 32768))))
        if self.bits == 12:
            raw = (raw >> 4) << 4
        self.regs[0] = raw & 0xFFFF


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Ads1x15Emulator:
    """Return an ADS1115 emulator driven by ``values``; the factory of the emulator registry."""
    return Ads1x15Emulator(values, clock=clock)
