"""A command-level Sensirion SHT4x (SHT40/41/45), so the real Adafruit driver runs without hardware.

Commands (datasheet SHT4x v6.6, section 4.5): 0xFD/0xF6/0xE0 measure at high/medium/low
precision, the heater commands (which also measure), 0x89 serial number, 0x94 soft reset. Each
reply is two words, each with its CRC-8; the temperature word is ``(T + 45) * 65535 / 175`` and
the humidity word ``(RH + 6) * 65535 / 125``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edge.emulated._sensirion import SensirionChip, encode_words

__all__ = ["DEFAULT_SERIAL", "Sht4xEmulator", "create", "humidity_word", "temperature_word"]

DEFAULT_SERIAL = 0x0F1E2D3C
_MEASURE = frozenset({0xFD, 0xF6, 0xE0, 0x39, 0x32, 0x2F, 0x24, 0x1E, 0x15})
_SERIAL = 0x89
_RESET = 0x94


def temperature_word(celsius: float) -> int:
    """The raw word of a temperature in Cel."""
    return max(0, min(0xFFFF, round((celsius + 45.0) * 65535.0 / 175.0)))


def humidity_word(rh: float) -> int:
    """The raw word of a relative humidity in %RH (the chip reports -6..119 %RH)."""
    return max(0, min(0xFFFF, round((rh + 6.0) * 65535.0 / 125.0)))


class Sht4xEmulator(SensirionChip):
    """An SHT4x whose environment follows ``values(now)`` (``temperature``, ``humidity``).

    The SHT4x takes one-byte commands, unlike the other Sensirion parts.
    """

    def __init__(
        self,
        values: Callable[[float], Mapping[str, float]],
        *,
        clock: Callable[[], float],
        serial: int = DEFAULT_SERIAL,
    ) -> None:
        super().__init__()
        self._values = values
        self._clock = clock
        self.serial = serial
        self.measurements = 0

    def write(self, data: bytes) -> None:
        """Handle a one-byte command."""
        if not data:
            return
        self.commands.append(data[0])
        del self.commands[:-64]
        reply = self.command(data[0], [])
        self._reply = encode_words(reply) if reply is not None else b""

    def command(self, code: int, args: list[int]) -> list[int] | None:
        """Execute a measurement, serial-number or reset command."""
        if code in _MEASURE:
            self.measurements += 1
            now = self._values(self._clock())
            return [temperature_word(now.get("temperature", 21.0)), humidity_word(now.get("humidity", 45.0))]
        if code == _SERIAL:
            return [self.serial >> 16, self.serial & 0xFFFF]
        if code == _RESET:
            return None
        raise self.nack(f"unknown SHT4x command {code:#04x}")


def create(values: Callable[[float], Mapping[str, float]], *, clock: Callable[[], float]) -> Sht4xEmulator:
    """Return an SHT4x emulator driven by ``values``; the factory of the emulator registry."""
    return Sht4xEmulator(values, clock=clock)
