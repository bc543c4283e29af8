"""Vishay VEML7700: ambient light (illuminance), over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_veml7700``) at gain 1/8 and 100 ms
integration (0.54 lx per count, up to about 35 000 lx), with Vishay's non-linearity correction;
option ``range: outdoor`` uses 25 ms integration (2.15 lx per count, up to about 120 000 lx, direct
sun). A saturated count is a :class:`~kits.errors.SensorError` naming the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers._common import check_options, did_not_answer, read_register
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import SensorError

__all__ = ["INFO", "Veml7700", "create", "probe"]

PART = "veml7700"
_RANGES = {"indoor": 0x0, "outdoor": 0xC}  # ALS_IT: 100 ms, 25 ms


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify a VEML7700 by its ID register (0x07: device id 0x81 in the low byte)."""
    data = read_register(i2c, address, b"\x07", 2)
    return f"device id {data[0]:#04x}" if data is not None and data[0] == 0x81 else None


INFO = driver_info(__file__, probe=probe)


class Veml7700:
    """A VEML7700 on an I2C bus; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Read the illuminance in lx.

        Raises:
            SensorError: no answer, or the count saturated.
        """
        try:
            counts = int(self._device.light)
            lux = float(self._device.compute_lux(counts, True))
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        if counts >= 0xFFFF:
            raise SensorError(
                f"sensor {PART} at {self._address:#04x} is saturated (more than {lux:.0f} lx): "
                "set the sensor option range: outdoor, or shade the sensor"
            )
        return Reading({"illuminance": lux})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Veml7700:
    """Power up the VEML7700 at ``address`` at gain 1/8.

    Options:
        range: ``indoor`` (default, 100 ms integration) or ``outdoor`` (25 ms).

    Raises:
        ConfigError: an unknown option or range.
        SensorError: nothing answers at ``address``.
    """

    def _range(value: Any) -> int:
        if value not in _RANGES:
            raise ValueError(f"use one of {', '.join(_RANGES)}")
        return _RANGES[value]

    opts = check_options(PART, options, {"range": _range})
    import adafruit_veml7700

    try:
        device = adafruit_veml7700.VEML7700(i2c, address)
        device.light_integration_time = opts.get("range", _RANGES["indoor"])
    except (OSError, ValueError, RuntimeError) as exc:
        raise did_not_answer(PART, address, exc) from exc
    return Veml7700(device, address)
