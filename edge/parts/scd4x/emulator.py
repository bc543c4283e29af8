"""A command-level Sensirion SCD4x (SCD40/41), so the real Adafruit driver runs without hardware.

Commands (datasheet SCD4x v1.6, section 3): start (0x21B1) and stop (0x3F86) periodic
measurement, get_data_ready_status (0xE4B8), read_measurement (0xEC05), get_serial_number
(0x3682), get_sensor_variant (0x202F), set/get_ambient_pressure (0xE000). In periodic mode a new
measurement is ready every 5 s after the start; the chip then answers only the commands the
datasheet allows in that mode and NACKs the others. Replies are words with CRC-8; a measurement is
CO2 in ppm, ``T = -45 + 175 * w / 65535`` and ``RH = 100 * w / 65535``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edge.emulated._sensirion import SensirionChip

__all__ = ["PERIOD_S", "Scd4xEmulator", "create"]

PERIOD_S = 5.0
_START = 0x21B1
_STOP = 0x3F86
_DATA_READY = 0xE4B8
_READ = 0xEC05
_SERIAL = 0x3682
_VARIANT = 0x202F
_PRESSURE = 0xE000
_REINIT = 0x3646
_WAKE = 0x36F6
_PERIODIC_ALLOWED = frozenset({_READ, _DATA_READY, _STOP, _PRESSURE})


class Scd4xEmulator(SensirionChip):
    """An SCD4x whose environment follows ``values(now)`` (``co2``, ``temperature``, ``humidity``).

    Args:
        values: the scenario.
        clock: the current epoch time; measurements fall every :data:`PERIOD_S` after the start.
        variant: 0 for an SCD40, 1 for an SCD41.
    """

    def __init__(
        self,
        values: Callable[[float], Mapping[str, float]],
        *,
        clock: Callable[[], float],
        serial: tuple[int, int, int] = (0x1A2B, 0x3C4D, 0x5E6F),
        variant: int = 1,
    ) -> None:
        super().__init__()
        self._values = values
        self._clock = clock
        self.serial = serial
        self.variant = variant
        self.periodic = False
        self._started = 0.0
        self._consumed = 0  # index of the last measurement read
        self.ambient_pressure = 1013

    def _latest(self) -> int:
        """The index of the latest completed measurement since the start (0: none yet)."""
        return int((self._clock() - self._started) // PERIOD_S) if self.periodic else 0

    def command(self, code: int, args: list[int]) -> list[int] | None:
        """Execute one SCD4x command."""
        if self.periodic and code not in _PERIODIC_ALLOWED:
            raise self.nack(f"command {code:#06x} is not allowed during periodic measurement")
        if code == _START:
            self.periodic, self._started, self._consumed = True, self._clock(), 0
            return None
        if code == _STOP:
            self.periodic = False
            return None
        if code == _DATA_READY:
            return [0x8006 if self._latest() > self._consumed else 0x8000]
        if code == _READ:
            latest = self._latest()
            if latest <= self._consumed:
                raise self.nack("no new measurement: read_measurement before data ready")
            self._consumed = latest
            now = self._values(self._started + latest * PERIOD_S)
            co2 = max(0, min(40000, round(now.get("co2", 420.0))))
            temp = max(0, min(0xFFFF, round((now.get("temperature", 21.0) + 45.0) * 65535.0 / 175.0)))
            rh = max(0, min(0xFFFF, round(now.get("humidity", 45.0) * 65535.0 / 100.0)))
            return [co2, temp, rh]
        if code == _SERIAL:
            return list(self.serial)
        if code == _VARIANT:
            return [self.variant << 12]
        if code == _PRESSURE:
            if args:
                self.ambient_pressure = args[0]
                return None
            return [self.ambient_pressure]
        if code in (_REINIT, _WAKE):
            return None
        raise self.nack(f"command {code:#06x} is not emulated")


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Scd4xEmulator:
    """Return an SCD4x emulator driven by ``values``; the factory of the emulator registry."""
    return Scd4xEmulator(values, clock=clock)
