"""Sensirion SHT4x (SHT40/41/45): temperature and relative humidity, over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_sht4x``) at high precision without heater:
each read is one 10 ms measurement whose two words carry a CRC-8 each; a CRC mismatch is a
:class:`~kits.errors.SensorError` (the agent retries), never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers._common import CRC_FIX, bad_data, check_options, crc8, did_not_answer, locked
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import SensorError

__all__ = ["INFO", "Sht4x", "create", "probe"]

PART = "sht4x"


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify an SHT4x by its serial-number command (0x89): two words with valid CRCs."""
    buf = bytearray(6)
    with locked(i2c):
        try:
            i2c.writeto(address, b"\x89")
            i2c.readfrom_into(address, buf)
        except OSError:
            return None
    if crc8(bytes(buf[0:2])) != buf[2] or crc8(bytes(buf[3:5])) != buf[5]:
        return None
    return f"serial {int.from_bytes(buf[0:2] + buf[3:5], 'big'):#010x}"


INFO = driver_info(__file__, probe=probe)


class Sht4x:
    """An SHT4x on an I2C bus; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Read temperature (Cel) and relative humidity (%RH).

        Raises:
            SensorError: no answer, or a word failed its CRC.
        """
        try:
            temperature, humidity = self._device.measurements
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        except RuntimeError as exc:  # "Invalid CRC calculated"
            raise bad_data(PART, self._address, exc, CRC_FIX) from exc
        return Reading({"temperature": float(temperature), "humidity": float(humidity)})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Sht4x:
    """Soft-reset the SHT4x at ``address`` on ``i2c`` and return its driver.

    Raises:
        ConfigError: ``options`` holds a key this driver does not know (it takes none).
        SensorError: nothing answers at ``address``.
    """
    check_options(PART, options, {})
    import adafruit_sht4x

    try:
        device = adafruit_sht4x.SHT4x(i2c, address)
        device.mode = adafruit_sht4x.Mode.NOHEAT_HIGHPRECISION
    except (OSError, ValueError) as exc:
        raise did_not_answer(PART, address, exc) from exc
    except RuntimeError as exc:
        raise SensorError(
            f"sensor {PART} at {address:#04x} failed to start ({exc}): power-cycle the Pi"
        ) from exc
    return Sht4x(device, address)
