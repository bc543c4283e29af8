"""Sensirion SCD30: CO2 (NDIR), temperature and relative humidity, over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_scd30``) in continuous measurement: the part
measures every 2 s by itself; a read before a new measurement is ready returns
:class:`~edge.drivers.base.NotReady`. Each word carries a CRC-8; a mismatch is a
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

__all__ = ["INFO", "Scd30", "create", "probe"]

PART = "scd30"


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify an SCD30 by its firmware version (0xD100: one word with a valid CRC)."""
    version = sensirion_command(i2c, address, 0xD100, 1)
    return f"firmware {version[0] >> 8}.{version[0] & 0xFF}" if version is not None else None


INFO = driver_info(__file__, probe=probe)


class Scd30:
    """An SCD30 in continuous measurement; create it with :func:`create`."""

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
            if pressure is not None and 700 <= pressure <= 1400 and round(pressure) != self._pressure:
                self._device.ambient_pressure = round(pressure)
                self._pressure = round(pressure)
            if not self._device.data_available:
                return NotReady("the SCD30 measures every 2 s: no new measurement yet")
            co2 = self._device.CO2
            temperature = self._device.temperature
            humidity = self._device.relative_humidity
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        except RuntimeError as exc:  # "CRC check failed while reading data"
            raise bad_data(PART, self._address, exc, CRC_FIX) from exc
        if co2 is None or temperature is None or humidity is None:
            return NotReady("the SCD30 has not completed its first measurement")
        return Reading({"co2": float(co2), "temperature": float(temperature), "humidity": float(humidity)})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Scd30:
    """Start continuous measurement of the SCD30 at ``address``.

    Options:
        altitude_m (int): the site's altitude, for CO2 compensation when no neighbour reads pressure.
        self_calibration (bool): automatic self-calibration (the part's default: on). Turn it off
            where the air is never fresh for an hour a day (a greenhouse).

    Raises:
        ConfigError: an unknown or invalid option.
        SensorError: nothing answers at ``address``, or the part refuses to start.
    """
    opts = check_options(PART, options, {"altitude_m": int, "self_calibration": bool})
    import adafruit_scd30  # type: ignore[import-untyped]

    try:
        device = adafruit_scd30.SCD30(i2c, address=address)
        if "altitude_m" in opts:
            device.altitude = opts["altitude_m"]
        if "self_calibration" in opts:
            device.self_calibration_enabled = opts["self_calibration"]
    except ValueError as exc:  # adafruit_bus_device's probe: "No I2C device at address"
        raise did_not_answer(PART, address, exc) from exc
    except (OSError, RuntimeError) as exc:
        raise SensorError(
            f"sensor {PART} at {address:#04x} did not start ({exc}): check the wiring "
            "or power-cycle the Pi; `suitcase edge scan` shows what is on the bus"
        ) from exc
    return Scd30(device, address)
