"""Sensirion SCD4x (SCD40/41): CO2, temperature and relative humidity, over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_scd4x``) in periodic measurement: the part
measures every 5 s by itself; a read before a new measurement is ready returns
:class:`~kits.edge.drivers.base.NotReady`. Each word carries a CRC-8; a mismatch is a
:class:`~kits.errors.SensorError`. When a neighbour reads air pressure, it is passed to the part
for pressure compensation of CO2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers._common import CRC_FIX, bad_data, check_options, did_not_answer, sensirion_command
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import SensorError

__all__ = ["INFO", "Scd4x", "create", "probe"]

PART = "scd4x"
_VARIANTS = {0: "SCD40", 1: "SCD41", 5: "SCD43"}


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify an idle SCD4x by its serial number (0x3682: three words with valid CRCs).

    A part in periodic measurement does not answer the command; it is then told by its data-ready
    status (0xE4B8), which it does answer.
    """
    serial = sensirion_command(i2c, address, 0x3682, 3)
    if serial is not None:
        return f"serial {serial[0]:04x}{serial[1]:04x}{serial[2]:04x}"
    ready = sensirion_command(i2c, address, 0xE4B8, 1)
    return "measuring (data-ready status answered)" if ready is not None else None


INFO = driver_info(__file__, probe=probe)


class Scd4x:
    """An SCD4x in periodic measurement; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address
        self._pressure: int | None = None

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Read CO2 (ppm), temperature (Cel) and relative humidity (%RH) if a measurement is ready.

        Raises:
            SensorError: no answer, or a word failed its CRC.
        """
        try:
            pressure = context.neighbour_value("pressure")
            if pressure is not None and 700 <= pressure <= 1200 and round(pressure) != self._pressure:
                self._device.ambient_pressure = round(pressure)
                self._pressure = round(pressure)
            if not self._device.data_ready:
                return NotReady("the SCD4x measures every 5 s: no new measurement yet")
            co2 = self._device.CO2
            temperature = self._device.temperature
            humidity = self._device.relative_humidity
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        except RuntimeError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError):  # the driver wraps a NACK as RuntimeError
                raise did_not_answer(PART, self._address, cause) from exc
            raise bad_data(PART, self._address, exc, CRC_FIX) from exc
        if co2 is None or temperature is None or humidity is None:
            return NotReady("the SCD4x has not completed its first measurement")
        return Reading({"co2": float(co2), "temperature": float(temperature), "humidity": float(humidity)})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Scd4x:
    """Stop any running measurement, then start periodic measurement of the SCD4x at ``address``.

    Options:
        altitude_m (int): the site's altitude, for CO2 compensation when no neighbour reads pressure.

    Raises:
        ConfigError: an unknown or invalid option.
        SensorError: nothing answers at ``address``.
    """
    opts = check_options(PART, options, {"altitude_m": int})
    import adafruit_scd4x

    try:
        device = adafruit_scd4x.SCD4X(i2c, address)
        if "altitude_m" in opts:
            device.altitude = opts["altitude_m"]
        device.start_periodic_measurement()
    except ValueError as exc:
        raise did_not_answer(PART, address, exc) from exc
    except (OSError, RuntimeError) as exc:
        raise SensorError(
            f"sensor {PART} at {address:#04x} did not start ({exc}): check the wiring "
            "or power-cycle the Pi; `suitcase edge scan` shows what is on the bus"
        ) from exc
    return Scd4x(device, address)
