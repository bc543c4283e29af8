"""Sensirion SGP40: VOC index (1-500), over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_sgp40``) and its port of Sensirion's VOC
algorithm. Each read sends the humidity and temperature a neighbour just read (an SHT4x, BME280
or SCD4x on the same Pi, via ``context``) for compensation, or 50 %RH and 25 Cel when none does.
The algorithm learns its baseline for its first 45 samples and reports 0 meanwhile: those reads
are :class:`~edge.drivers.base.NotReady`. It assumes one sample a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers._common import CRC_FIX, bad_data, check_options, did_not_answer, sensirion_command
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import SensorError

__all__ = ["INFO", "Sgp40", "create", "probe"]

PART = "sgp40"


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify an SGP40 by its feature set (0x202F answers 0x32xx, with a valid CRC)."""
    features = sensirion_command(i2c, address, 0x202F, 1)
    if features is None or features[0] & 0xFF00 != 0x3200:
        return None
    return f"feature set {features[0]:#06x}"


INFO = driver_info(__file__, probe=probe)


class Sgp40:
    """An SGP40 and its VOC algorithm state; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address
        self.compensated = False

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Measure one raw signal, compensated, and return the VOC index.

        Raises:
            SensorError: no answer, or the reply failed its CRC.
        """
        humidity = context.neighbour_value("humidity")
        temperature = context.neighbour_value("temperature")
        self.compensated = humidity is not None and temperature is not None
        try:
            index = self._device.measure_index(
                temperature=temperature if temperature is not None else 25.0,
                relative_humidity=humidity if humidity is not None else 50.0,
            )
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        except RuntimeError as exc:
            raise bad_data(PART, self._address, exc, CRC_FIX) from exc
        if index <= 0:
            return NotReady("the VOC algorithm is learning its baseline (first 45 samples)")
        return Reading({"voc_index": float(index)})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Sgp40:
    """Check the SGP40's serial number, feature set and self test, and return its driver.

    Raises:
        ConfigError: ``options`` holds a key (it takes none).
        SensorError: nothing answers at ``address``, or the self test failed.
    """
    check_options(PART, options, {})
    import adafruit_sgp40

    try:
        device = adafruit_sgp40.SGP40(i2c, address)
    except (OSError, ValueError) as exc:
        raise did_not_answer(PART, address, exc) from exc
    except RuntimeError as exc:
        raise SensorError(
            f"sensor {PART} at {address:#04x} failed its start-up checks ({exc}): "
            "power-cycle the Pi, and replace the sensor if it persists"
        ) from exc
    return Sgp40(device, address)
