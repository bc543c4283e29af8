"""A command-level Sensirion SGP40, so the real Adafruit driver (and its VOC algorithm) runs.

Commands (datasheet SGP40 v1.2, section 4): measure_raw_signal (0x260F, with humidity and
temperature compensation words, each with its CRC), execute_self_test (0x280E -> 0xD400),
turn_heater_off (0x3615), get_serial_number (0x3682 -> 3 words), get_featureset (0x202F ->
0x3220, which the Adafruit driver checks) and the general-call soft reset (0x0006).

The raw signal (SRAW ticks) falls as VOCs rise. The scenario gives a ``voc_index`` target; the
emulator maps it to ticks around a clean-air baseline of 30 000, so the driver's VOC algorithm,
which learns that baseline, reports indices that rise and fall with the scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edge.emulated._sensirion import SensirionChip

__all__ = ["BASELINE_TICKS", "Sgp40Emulator", "create", "ticks_of_index"]

BASELINE_TICKS = 30000
_MEASURE = 0x260F
_SELF_TEST = 0x280E
_HEATER_OFF = 0x3615
_SERIAL = 0x3682
_FEATURES = 0x202F
_RESET = 0x0006


def ticks_of_index(voc_index: float) -> int:
    """The raw ticks that read as ``voc_index`` once the algorithm has learnt clean air (100)."""
    return max(0, min(0xFFFF, round(BASELINE_TICKS - (voc_index - 100.0) * 40.0)))


class Sgp40Emulator(SensirionChip):
    """An SGP40 whose environment follows ``values(now)`` (``voc_index``).

    Attributes:
        compensation: the last (humidity %RH, temperature Cel) the driver sent with a measurement.
    """

    def __init__(self, values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> None:
        super().__init__()
        self._values = values
        self._clock = clock
        self.compensation: tuple[float, float] | None = None
        self.measurements = 0

    def command(self, code: int, args: list[int]) -> list[int] | None:
        """Execute one SGP40 command."""
        if code == _MEASURE:
            if len(args) != 2:
                raise self.nack("measure_raw_signal needs humidity and temperature words")
            rh = args[0] * 100.0 / 65535.0
            temp = args[1] * 175.0 / 65535.0 - 45.0
            self.compensation = (rh, temp)
            self.measurements += 1
            return [ticks_of_index(self._values(self._clock()).get("voc_index", 100.0))]
        if code == _SELF_TEST:
            return [0xD400]
        if code == _SERIAL:
            return [0x0000, 0x0123, 0x4567]
        if code == _FEATURES:
            return [0x3220]
        if code in (_HEATER_OFF, _RESET):
            return None
        raise self.nack(f"command {code:#06x} is not emulated")


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Sgp40Emulator:
    """Return an SGP40 emulator driven by ``values``; the factory of the emulator registry."""
    return Sgp40Emulator(values, clock=clock)
