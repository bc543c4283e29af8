"""A register-level Bosch BME280, so the real Adafruit driver runs without hardware.

The register map follows the BME280 datasheet (BST-BME280-DS002, section 5): chip id, soft reset,
ctrl_hum, status, ctrl_meas, config, the trimming parameters, and the raw ADC values. On a
measurement (a write of forced or normal mode to ctrl_meas) the emulator asks its scenario for
target values and finds the raw ADC values whose compensation, with the same floating-point
formulas as the datasheet (section 8.1) and the Adafruit driver, comes closest to them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "BME280_CHIP_ID",
    "BMP280_CHIP_ID",
    "DEFAULT_TRIM",
    "Bme280Emulator",
    "Trim",
    "compensate_humidity",
    "compensate_pressure",
    "compensate_t_fine",
    "create",
]

BME280_CHIP_ID = 0x60
BMP280_CHIP_ID = 0x58

_REG_CALIB_TP = 0x88  # dig_T1 .. dig_P9, 24 bytes
_REG_H1 = 0xA1
_REG_CHIP_ID = 0xD0
_REG_RESET = 0xE0
_REG_CALIB_H = 0xE1  # dig_H2 .. dig_H6, 7 bytes
_REG_CTRL_HUM = 0xF2
_REG_STATUS = 0xF3
_REG_CTRL_MEAS = 0xF4
_REG_CONFIG = 0xF5
_REG_PRESS = 0xF7
_REG_TEMP = 0xFA
_REG_HUM = 0xFD
_RESET_WORD = 0xB6
_SKIPPED_20BIT = 0x80000  # what a skipped temperature or pressure conversion reads
_SKIPPED_16BIT = 0x8000
_WRITABLE = frozenset({_REG_RESET, _REG_CTRL_HUM, _REG_CTRL_MEAS, _REG_CONFIG})

_DEFAULTS = {"temperature": 20.0, "humidity": 50.0, "pressure": 1013.25}


@dataclass(frozen=True, slots=True)
class Trim:
    """The factory trimming parameters (datasheet table 16), as stored in NVM."""

    t1: int
    t2: int
    t3: int
    p1: int
    p2: int
    p3: int
    p4: int
    p5: int
    p6: int
    p7: int
    p8: int
    p9: int
    h1: int
    h2: int
    h3: int
    h4: int
    h5: int
    h6: int

    def block_tp(self) -> bytes:
        """Registers 0x88..0x9F: dig_T1..dig_P9, little-endian."""
        return struct.pack(
            "<HhhHhhhhhhhh",
            self.t1, self.t2, self.t3,
            self.p1, self.p2, self.p3, self.p4, self.p5, self.p6, self.p7, self.p8, self.p9,
        )  # fmt: skip

    def block_h(self) -> bytes:
        """Registers 0xE1..0xE7: dig_H2..dig_H6, with H4 and H5 sharing the nibbles of 0xE5."""
        e4 = (self.h4 >> 4) & 0xFF
        e5 = ((self.h5 & 0x0F) << 4) | (self.h4 & 0x0F)
        e6 = (self.h5 >> 4) & 0xFF
        return struct.pack("<hBBBBb", self.h2, self.h3, e4, e5, e6, self.h6)


# The temperature and pressure trims are the datasheet's worked example (BMP280 datasheet,
# section 3.12); the humidity trims are those of a production BME280.
DEFAULT_TRIM = Trim(
    t1=27504, t2=26435, t3=-1000,
    p1=36477, p2=-10685, p3=3024, p4=2855, p5=140, p6=-7, p7=15500, p8=-14600, p9=6000,
    h1=75, h2=362, h3=0, h4=313, h5=50, h6=30,
)  # fmt: skip


def compensate_t_fine(adc_t: float, trim: Trim) -> int:
    """Return t_fine for a raw temperature (temperature in Cel is t_fine / 5120)."""
    var1 = (adc_t / 16384.0 - trim.t1 / 1024.0) * trim.t2
    var2 = ((adc_t / 131072.0 - trim.t1 / 8192.0) * (adc_t / 131072.0 - trim.t1 / 8192.0)) * trim.t3
    return int(var1 + var2)


def compensate_pressure(adc_p: float, t_fine: int, trim: Trim) -> float:
    """Return the pressure in hPa for a raw pressure at ``t_fine``."""
    var1 = float(t_fine) / 2.0 - 64000.0
    var2 = var1 * var1 * trim.p6 / 32768.0
    var2 += var1 * trim.p5 * 2.0
    var2 = var2 / 4.0 + trim.p4 * 65536.0
    var3 = trim.p3 * var1 * var1 / 524288.0
    var1 = (var3 + trim.p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * trim.p1
    if not var1:
        return 0.0
    pressure = 1048576.0 - adc_p
    pressure = ((pressure - var2 / 4096.0) * 6250.0) / var1
    var1 = trim.p9 * pressure * pressure / 2147483648.0
    var2 = pressure * trim.p8 / 32768.0
    pressure += (var1 + var2 + trim.p7) / 16.0
    return pressure / 100.0


def compensate_humidity(adc_h: float, t_fine: int, trim: Trim) -> float:
    """Return the relative humidity in %RH (clamped to 0..100) for a raw humidity at ``t_fine``."""
    h4 = float(trim.h4)
    h5 = float(trim.h5)
    var1 = float(t_fine) - 76800.0
    var2 = h4 * 64.0 + (h5 / 16384.0) * var1
    var3 = adc_h - var2
    var4 = trim.h2 / 65536.0
    var5 = 1.0 + (trim.h3 / 67108864.0) * var1
    var6 = 1.0 + (trim.h6 / 67108864.0) * var1 * var5
    var6 = var3 * var4 * (var5 * var6)
    humidity = var6 * (1.0 - trim.h1 * var6 / 524288.0)
    return min(100.0, max(0.0, humidity))


def _closest(target: float, f: Callable[[int], float], bits: int, *, increasing: bool) -> int:
    """Return the raw value in ``0 .. 2**bits - 1`` whose ``f`` is closest to ``target``."""
    sign = 1.0 if increasing else -1.0
    lo, hi = 0, (1 << bits) - 1
    while lo < hi:  # smallest raw with sign * f(raw) >= sign * target
        mid = (lo + hi) // 2
        if sign * f(mid) >= sign * target:
            hi = mid
        else:
            lo = mid + 1
    if lo > 0 and abs(f(lo - 1) - target) < abs(f(lo) - target):
        return lo - 1
    return lo


class Bme280Emulator:
    """A BME280 whose environment follows ``values(now)``.

    Args:
        values: returns the targets at epoch time ``now``: ``temperature`` (Cel), ``humidity``
            (%RH) and ``pressure`` (hPa); a missing key reads as 20 Cel, 50 %RH, 1013.25 hPa.
        clock: the current epoch time.
        trim: the factory trimming parameters to expose.
        chip_id: 0x60 for a BME280; 0x58 emulates a BMP280's identity (for scans).
    """

    def __init__(
        self,
        values: Callable[[float], Mapping[str, float]],
        *,
        clock: Callable[[], float],
        trim: Trim = DEFAULT_TRIM,
        chip_id: int = BME280_CHIP_ID,
    ) -> None:
        self._values = values
        self._clock = clock
        self.trim = trim
        self._regs = bytearray(256)
        self._regs[_REG_CHIP_ID] = chip_id
        tp = trim.block_tp()
        self._regs[_REG_CALIB_TP : _REG_CALIB_TP + len(tp)] = tp
        self._regs[_REG_H1] = trim.h1
        h = trim.block_h()
        self._regs[_REG_CALIB_H : _REG_CALIB_H + len(h)] = h
        self._pointer = 0
        self.measurements = 0
        self._reset()

    # --- the I2C side

    def write(self, data: bytes) -> None:
        """Handle a write transfer: a register pointer, then register/value pairs."""
        if not data:
            return  # an address probe
        self._pointer = data[0]
        # A write is (register, value) pairs, without auto-increment: datasheet 6.2.1.
        for i in range(0, len(data) - 1, 2):
            self._write_register(data[i], data[i + 1])

    def read(self, length: int) -> bytes:
        """Handle a read transfer from the register pointer, auto-incrementing."""
        if self._mode == 0b11 and _REG_PRESS <= self._pointer <= _REG_HUM + 1:
            self._measure()
        start = self._pointer
        out = bytes(self._regs[(start + i) & 0xFF] for i in range(length))
        self._pointer = (start + length) & 0xFF
        return out

    # --- the chip

    @property
    def _mode(self) -> int:
        return self._regs[_REG_CTRL_MEAS] & 0b11

    def _reset(self) -> None:
        for reg in (_REG_CTRL_HUM, _REG_STATUS, _REG_CTRL_MEAS, _REG_CONFIG):
            self._regs[reg] = 0
        self._store(_REG_PRESS, _SKIPPED_20BIT)
        self._store(_REG_TEMP, _SKIPPED_20BIT)
        self._regs[_REG_HUM] = _SKIPPED_16BIT >> 8
        self._regs[_REG_HUM + 1] = 0

    def _write_register(self, register: int, value: int) -> None:
        if register not in _WRITABLE:
            return  # read-only registers ignore writes, as on the chip
        if register == _REG_RESET:
            if value == _RESET_WORD:
                self._reset()
            return
        self._regs[register] = value
        if register == _REG_CTRL_MEAS and value & 0b11:
            self._measure()
            if value & 0b11 != 0b11:
                self._regs[_REG_CTRL_MEAS] = value & ~0b11  # forced mode returns to sleep

    def _measure(self) -> None:
        self.measurements += 1
        targets = {**_DEFAULTS, **self._values(self._clock())}
        osrs_t = self._regs[_REG_CTRL_MEAS] >> 5
        osrs_p = (self._regs[_REG_CTRL_MEAS] >> 2) & 0b111
        osrs_h = self._regs[_REG_CTRL_HUM] & 0b111
        trim = self.trim

        if osrs_t:
            target_fine = targets["temperature"] * 5120.0
            adc_t = _closest(target_fine, lambda raw: compensate_t_fine(raw, trim), 20, increasing=True)
        else:
            adc_t = _SKIPPED_20BIT
        t_fine = compensate_t_fine(adc_t, trim)
        self._store(_REG_TEMP, adc_t)

        if osrs_p:
            adc_p = _closest(
                targets["pressure"], lambda raw: compensate_pressure(raw, t_fine, trim), 20, increasing=False
            )
        else:
            adc_p = _SKIPPED_20BIT
        self._store(_REG_PRESS, adc_p)

        if osrs_h:
            adc_h = _closest(
                targets["humidity"], lambda raw: compensate_humidity(raw, t_fine, trim), 16, increasing=True
            )
        else:
            adc_h = _SKIPPED_16BIT
        self._regs[_REG_HUM] = adc_h >> 8
        self._regs[_REG_HUM + 1] = adc_h & 0xFF

    def _store(self, register: int, raw20: int) -> None:
        """Store a 20-bit raw value as msb, lsb, xlsb[7:4]."""
        self._regs[register] = (raw20 >> 12) & 0xFF
        self._regs[register + 1] = (raw20 >> 4) & 0xFF
        self._regs[register + 2] = (raw20 & 0x0F) << 4


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Bme280Emulator:
    """Return a BME280 emulator driven by ``values``; the factory of the emulator registry."""
    return Bme280Emulator(values, clock=clock)
