"""Plantower PMSA003I: PM1.0, PM2.5, PM10 and particle counts, over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_pm25.i2c``). Each read is the part's latest
32-byte frame, checked by the driver for its header, length and checksum; a bad frame is a
:class:`~kits.errors.SensorError`. The atmospheric-environment concentrations are published
(not the CF=1 "standard" ones, meant for factory calibration). The fan needs 30 s after power-up
for stable values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers._common import bad_data, check_options, did_not_answer, locked, probe_address
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import SensorError

__all__ = ["INFO", "Pmsa003i", "create", "probe"]

PART = "pmsa003i"
_FIELDS = {
    "pm1_0": "pm10 env",
    "pm2_5": "pm25 env",
    "pm10": "pm100 env",
    "particles_03um": "particles 03um",
    "particles_05um": "particles 05um",
    "particles_10um": "particles 10um",
    "particles_25um": "particles 25um",
    "particles_50um": "particles 50um",
    "particles_100um": "particles 100um",
}


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify a PMSA003I by its frame header ``BM`` and length 28."""
    buf = bytearray(4)
    with locked(i2c):
        try:
            i2c.readfrom_into(address, buf)
        except OSError:
            return None
    return "frame header BM" if buf[:2] == b"BM" and buf[2:4] == b"\x00\x1c" else None


INFO = driver_info(__file__, probe=probe)


class Pmsa003i:
    """A PMSA003I on an I2C bus; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Read one frame: concentrations in ug/m3, particle counts per 0.1 L.

        Raises:
            SensorError: no answer, or a frame with a bad header, length or checksum.
        """
        try:
            frame = self._device.read()
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        except RuntimeError as exc:
            if isinstance(exc.__cause__, OSError):  # "Unable to read from PM2.5 over I2C"
                raise did_not_answer(PART, self._address, exc.__cause__) from exc
            raise bad_data(
                PART, self._address, exc, "a frame was corrupted on the bus; the reading is retried"
            ) from exc
        return Reading({qty: float(frame[field]) for qty, field in _FIELDS.items()})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Pmsa003i:
    """Return the driver of the PMSA003I at ``address``.

    Raises:
        ConfigError: ``options`` holds a key (it takes none).
        SensorError: nothing answers at ``address``.
    """
    check_options(PART, options, {})
    # The Adafruit driver retries a missing part five times with 1 s sleeps; probe once instead.
    if not probe_address(i2c, address):
        raise did_not_answer(PART, address, OSError("no ACK"))
    from adafruit_pm25.i2c import PM25_I2C

    try:
        device = PM25_I2C(i2c, None, address)
    except (OSError, RuntimeError) as exc:
        raise SensorError(f"sensor {PART} at {address:#04x} did not start ({exc}): check the wiring") from exc
    return Pmsa003i(device, address)
