"""A register-level TI TCA9548A I2C multiplexer, so the real Adafruit driver runs without hardware.

The chip has one control register (datasheet SCPS207, section 8.6.1): each bit opens one of its
eight channels. A write of one byte sets it (of several bytes, the last one counts); a read returns
it. Its address is 0x70 to 0x77 (pins A0-A2). The chips behind an open channel answer on the
Pi's bus as if they were on it; :class:`edge.emulated.bus.EmulatedI2C` routes to them.
"""

from __future__ import annotations

from edge.emulated.chip import Chip

__all__ = ["Tca9548aEmulator"]


class Tca9548aEmulator:
    """A TCA9548A and the chips on each of its channels."""

    def __init__(self) -> None:
        self.control = 0x00  # all channels closed at power-up
        self.channels: list[dict[int, Chip]] = [{} for _ in range(8)]
        self.selects = 0

    def write(self, data: bytes) -> None:
        """Set the control register (an empty write is an address probe)."""
        if data:
            self.control = data[-1]
            self.selects += 1

    def read(self, length: int) -> bytes:
        """Read the control register."""
        return bytes([self.control]) * length

    def open_chips(self, address: int) -> list[tuple[int, Chip]]:
        """The chips at ``address`` on the open channels, with their channel."""
        return [
            (channel, chips[address])
            for channel, chips in enumerate(self.channels)
            if self.control >> channel & 1 and address in chips
        ]

    def open_addresses(self) -> set[int]:
        """Every address that answers on the open channels."""
        return {a for c, chips in enumerate(self.channels) if self.control >> c & 1 for a in chips}
