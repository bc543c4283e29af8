"""Bosch BME280: temperature, relative humidity and air pressure, over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_bme280.basic``) in forced mode: every read
triggers one conversion per quantity, so the sensor sleeps between reads and does not warm itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import ConfigError, SensorError

__all__ = ["INFO", "Bme280", "create"]

INFO = driver_info(__file__)

_WIRING_HINT = "check the wiring on pins 3/5 (SDA/SCL) or run `suitcase edge scan`"


def _did_not_answer(address: int, exc: BaseException) -> SensorError:
    return SensorError(f"sensor bme280 at {address:#04x} did not answer ({exc}): {_WIRING_HINT}")


class Bme280:
    """A BME280 on an I2C bus; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address

    @property
    def address(self) -> int:
        """The sensor's I2C address."""
        return self._address

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Read temperature (Cel), relative humidity (%RH) and pressure (hPa).

        Raises:
            SensorError: the sensor did not answer or its calibration data is unreadable.
        """
        try:
            temperature = float(self._device.temperature)
            humidity = float(self._device.relative_humidity)
            pressure = float(self._device.pressure)
        except OSError as exc:
            raise _did_not_answer(self._address, exc) from exc
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise SensorError(
                f"sensor bme280 at {self._address:#04x} returned unusable data ({exc}): "
                "its calibration registers may be corrupt; power-cycle the Pi, and replace the "
                "sensor if it persists"
            ) from exc
        return Reading({"temperature": temperature, "humidity": humidity, "pressure": pressure})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Bme280:
    """Probe, reset and configure the BME280 at ``address`` on ``i2c``.

    Raises:
        ConfigError: ``options`` holds a key this driver does not know.
        SensorError: nothing answers at ``address``, or another chip does.
    """
    if options:
        raise ConfigError(f"sensor bme280 takes no options, got {sorted(options)}: remove them")
    from adafruit_bme280.basic import Adafruit_BME280_I2C

    try:
        device = Adafruit_BME280_I2C(i2c, address)
    except OSError as exc:
        raise _did_not_answer(address, exc) from exc
    except ValueError as exc:  # adafruit_bus_device's probe: "No I2C device at address"
        raise _did_not_answer(address, exc) from exc
    except RuntimeError as exc:  # "Failed to find BME280! Chip ID 0x58"
        raise SensorError(_wrong_chip_message(i2c, address, exc)) from exc
    return Bme280(device, address)


def _wrong_chip_message(i2c: I2CBus, address: int, exc: BaseException) -> str:
    chip_id: int | None = None
    try:
        buf = bytearray(1)
        while not i2c.try_lock():
            pass
        try:
            i2c.writeto_then_readfrom(address, bytes([0xD0]), buf)
        finally:
            i2c.unlock()
        chip_id = buf[0]
    except OSError:
        pass
    what = INFO.look_alikes.get(chip_id, "an unknown chip") if chip_id is not None else "an unknown chip"
    shown = f"{chip_id:#04x}" if chip_id is not None else "unreadable"
    return (
        f"sensor bme280 at {address:#04x} is not a BME280 (chip id {shown}, {what}; {exc}): "
        "fit a BME280 there or change the part in the device config; `suitcase edge scan` "
        "shows what is on the bus"
    )
