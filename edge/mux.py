"""The Pi's I2C bus and the TCA9548A multiplexer channels behind it.

A sensor's place on the bus is its address, or the path ``0x70/3/0x77``: channel 3 of the
multiplexer at 0x70, then the part's address. :class:`BusTree` hands each sensor's driver the bus
it sits on: the Pi's bus itself, or a channel of the real Adafruit ``adafruit_tca9548a`` driver,
which opens the channel for each transaction and closes it after.
"""

from __future__ import annotations

import threading

from edge.drivers._common import probe_address
from edge.drivers.base import I2CBus
from kits.errors import SensorError
from kits.models import MuxPort

__all__ = ["BusTree"]


class BusTree:
    """The Pi's bus and one Adafruit ``TCA9548A`` per multiplexer address in use."""

    def __init__(self, i2c: I2CBus) -> None:
        self.root = i2c
        self._muxes: dict[int, object] = {}
        self._lock = threading.Lock()

    def bus_for(self, mux: MuxPort | None) -> I2CBus:
        """The bus a sensor at ``mux`` (None: on the Pi's bus) talks through.

        Raises:
            SensorError: no multiplexer answers at the path's address.
        """
        if mux is None:
            return self.root
        with self._lock:
            tca = self._muxes.get(mux.address)
            if tca is None:
                if not probe_address(self.root, mux.address):
                    raise SensorError(
                        f"no TCA9548A multiplexer answers at {mux.address:#04x} (path {mux}/...): check "
                        "its cable and its A0-A2 pins, or fix the path; `suitcase edge scan` shows what is "
                        "on the bus"
                    )
                import adafruit_tca9548a  # type: ignore[import-untyped]

                tca = adafruit_tca9548a.TCA9548A(self.root, address=mux.address)
                self._muxes[mux.address] = tca
        channel: I2CBus = tca[mux.channel]  # type: ignore[index]
        return channel
