"""A command-level Sensirion SCD30, so the real Adafruit driver runs without hardware.

Commands (Sensirion "Interface Description SCD30", version 1.0, section 1.4): trigger continuous
measurement with an optional ambient pressure (0x0010; read back as the pressure set), stop
(0x0104), set/get measurement interval (0x4600, 2 to 1800 s), get data ready (0x0202), read
measurement (0x0300), automatic self-calibration (0x5306), forced recalibration value (0x5204),
temperature offset (0x5403), altitude (0x5102), firmware version (0xD100) and soft reset
(0xD304). A write is a 16-bit command, optionally one argument word with its CRC-8; a read
returns words each with its CRC-8. A measurement is three big-endian IEEE 754 floats (CO2 in
ppm, temperature in Cel, relative humidity in %RH), each sent as two words, and is ready one
interval after the start and every interval after that.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

from edge.emulated._sensirion import SensirionChip

__all__ = ["FIRMWARE", "Scd30Emulator", "create"]

FIRMWARE = 0x0342  # 3.66, what current SCD30s report
_START = 0x0010
_STOP = 0x0104
_INTERVAL = 0x4600
_DATA_READY = 0x0202
_READ = 0x0300
_ASC = 0x5306
_FRC = 0x5204
_TEMP_OFFSET = 0x5403
_ALTITUDE = 0x5102
_FIRMWARE = 0xD100
_RESET = 0xD304


def _float_words(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [raw[0] << 8 | raw[1], raw[2] << 8 | raw[3]]


class Scd30Emulator(SensirionChip):
    """An SCD30 whose environment follows ``values(now)`` (``co2``, ``temperature``, ``humidity``).

    Args:
        values: the scenario.
        clock: the current epoch time; measurements fall every ``interval_s`` after the start.
    """

    def __init__(self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> None:
        super().__init__()
        self._values = values
        self._clock = clock
        self.interval_s = 2  # kept in the chip's non-volatile memory
        self.measuring = False
        self.pressure_mbar = 0
        self.altitude_m = 0
        self.self_calibration = True
        self.recalibration_ppm = 400
        self.temperature_offset = 0  # in 0.01 Cel
        self._started = 0.0
        self._consumed = 0  # index of the last measurement read

    def _latest(self) -> int:
        """The index of the latest completed measurement since the start (0: none yet)."""
        return int((self._clock() - self._started) // self.interval_s) if self.measuring else 0

    def command(self, code: int, args: list[int]) -> list[int] | None:
        """Execute one SCD30 command; a setting without an argument is a read of that setting."""
        arg = args[0] if args else None
        if code == _START:
            if arg is None:
                return [self.pressure_mbar]
            if arg != 0 and not 700 <= arg <= 1400:
                raise self.nack(f"ambient pressure {arg} mbar outside 700-1400")
            if not self.measuring:
                self._started, self._consumed = self._clock(), 0
            self.measuring, self.pressure_mbar = True, arg
            return None
        if code == _STOP:
            self.measuring = False
            return None
        if code == _INTERVAL:
            if arg is None:
                return [self.interval_s]
            if not 2 <= arg <= 1800:
                raise self.nack(f"measurement interval {arg} s outside 2-1800")
            self.interval_s = arg
            self._started, self._consumed = self._clock(), 0
            return None
        if code == _DATA_READY:
            return [1 if self._latest() > self._consumed else 0]
        if code == _READ:
            latest = self._latest()
            if latest <= self._consumed:
                raise self.nack("no new measurement: read measurement before data ready")
            self._consumed = latest
            now = self._values(self._started + latest * self.interval_s)
            co2 = max(0.0, min(10000.0, now.get("co2", 420.0)))
            temperature = now.get("temperature", 21.0) - self.temperature_offset / 100.0
            humidity = max(0.0, min(100.0, now.get("humidity", 45.0)))
            return _float_words(co2) + _float_words(temperature) + _float_words(humidity)
        if code == _ASC:
            if arg is None:
                return [int(self.self_calibration)]
            self.self_calibration = bool(arg)
            return None
        if code == _FRC:
            if arg is None:
                return [self.recalibration_ppm]
            self.recalibration_ppm = arg
            return None
        if code == _TEMP_OFFSET:
            if arg is None:
                return [self.temperature_offset]
            self.temperature_offset = arg
            return None
        if code == _ALTITUDE:
            if arg is None:
                return [self.altitude_m]
            self.altitude_m = arg
            return None
        if code == _FIRMWARE:
            return [FIRMWARE]
        if code == _RESET:
            # A soft reset keeps the non-volatile settings and restarts a running measurement.
            self.pressure_mbar = 0
            self._started, self._consumed = self._clock(), 0
            return None
        raise self.nack(f"command {code:#06x} is not an SCD30 command")


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Scd30Emulator:
    """Return an SCD30 emulator driven by ``values``; the factory of the emulator registry."""
    return Scd30Emulator(values, clock=clock)
