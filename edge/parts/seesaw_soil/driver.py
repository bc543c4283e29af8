"""Adafruit STEMMA soil sensor (seesaw on a SAMD09): soil moisture as capacitance, and temperature.

Wraps the Adafruit CircuitPython seesaw driver (``adafruit_seesaw.seesaw``). The probe's
capacitance rises with the water in the soil: about 200 in dry air, 2000 in wet soil; the server
turns it into a percentage with a calibration (scale and offset) measured in the bed. The
temperature is the chip's own, on the board above the soil.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers._common import bad_data, did_not_answer, locked
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import ConfigError, SensorError

__all__ = ["INFO", "SoilSensor", "create", "probe"]

PART = "seesaw_soil"
_SEESAW_HW_IDS = frozenset({0x55, 0x46, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89})
_SOIL_PRODUCT = 4026
_FIX = (
    "the probe gave no stable value: push it into the soil up to the line, keep the board above "
    "the soil and dry, and check the cable"
)


def _register(i2c: I2CBus, address: int, base: int, reg: int, length: int) -> bytes | None:
    # seesaw needs a stop and a pause between the register write and the read: no repeated start
    buf = bytearray(length)
    with locked(i2c):
        try:
            i2c.writeto(address, bytes([base, reg]))
            i2c.readfrom_into(address, buf)
        except OSError:
            return None
    return bytes(buf)


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify a soil sensor by its seesaw hardware id (0x00/0x01) and product number (0x00/0x02)."""
    hw_id = _register(i2c, address, 0x00, 0x01, 1)
    if hw_id is None or hw_id[0] not in _SEESAW_HW_IDS:
        return None
    version = _register(i2c, address, 0x00, 0x02, 4)
    if version is None or int.from_bytes(version[:2], "big") != _SOIL_PRODUCT:
        return None
    return f"seesaw {hw_id[0]:#04x}, product {_SOIL_PRODUCT}"


INFO = driver_info(__file__, probe=probe)


class SoilSensor:
    """A soil sensor on an I2C bus; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Read the probe's capacitance (soil moisture) and the board's temperature (Cel).

        Raises:
            SensorError: no answer, or no valid capacitance after the driver's retries.
        """
        try:
            moisture = float(self._device.moisture_read())
            temperature = float(self._device.get_temp())
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        except RuntimeError as exc:  # "Could not get a valid moisture reading."
            raise bad_data(PART, self._address, exc, _FIX) from exc
        return Reading({"soil_moisture": moisture, "temperature": temperature})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> SoilSensor:
    """Reset the soil sensor at ``address`` and check that it is one.

    Raises:
        ConfigError: ``options`` is not empty (the part takes none).
        SensorError: nothing answers at ``address``, or another seesaw board does.
    """
    if options:
        raise ConfigError(f"sensor {PART} takes no options, got {sorted(options)}: remove them")
    from adafruit_seesaw.seesaw import Seesaw  # type: ignore[import-untyped]

    try:
        device = Seesaw(i2c, addr=address)
        product = device.get_version() >> 16
    except ValueError as exc:  # adafruit_bus_device's probe: "No I2C device at address"
        raise did_not_answer(PART, address, exc) from exc
    except OSError as exc:
        raise did_not_answer(PART, address, exc) from exc
    except RuntimeError as exc:  # "Seesaw hardware ID returned 0x.. is not correct!"
        raise SensorError(
            f"sensor {PART} at {address:#04x} is not a seesaw board ({exc}): fit the soil sensor "
            "there or change the part in the device config; `suitcase edge scan` shows what is on the bus"
        ) from exc
    if product != _SOIL_PRODUCT:
        raise SensorError(
            f"sensor {PART} at {address:#04x} is seesaw product {product}, not the soil sensor "
            f"({_SOIL_PRODUCT}): change the part in the device config or the address"
        )
    return SoilSensor(device, address)
