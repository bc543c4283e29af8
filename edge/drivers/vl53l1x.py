"""ST VL53L1X: time-of-flight distance (bin fill level), over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_vl53l1x``) in long-distance mode with a 50 ms
timing budget, ranging continuously. A read returns the latest range once the part flags new
data; :class:`~edge.drivers.base.NotReady` before that or when no target is in range (up to 4 m).
The driver reports centimetres; the wrapper converts to mm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.drivers._common import check_options, did_not_answer, read_register
from edge.drivers.base import DriverInfo, I2CBus, NotReady, ReadContext, Reading
from kits.errors import SensorError
from kits.quantities import quantity

__all__ = ["INFO", "Vl53l1x", "create", "probe"]

PART = "vl53l1x"


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify a VL53L1X by its model id and module type (0x010F: 0xEA, 0xCC)."""
    data = read_register(i2c, address, b"\x01\x0f", 2)
    return "model id 0xea, module type 0xcc" if data == b"\xea\xcc" else None


INFO = DriverInfo(
    part=PART,
    title="ST VL53L1X time-of-flight distance",
    addresses=(0x29,),
    quantities=(quantity("distance"),),
    min_interval_s=0.1,
    warmup_s=0.0,
    probe=probe,
)


class Vl53l1x:
    """A ranging VL53L1X; create it with :func:`create`."""

    def __init__(self, device: Any, address: int) -> None:
        self._device = device
        self._address = address

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Read the distance to the target in mm.

        Raises:
            SensorError: the part did not answer.
        """
        try:
            if not self._device.data_ready:
                return NotReady("no new range yet (the VL53L1X ranges every 50 ms)")
            centimetres = self._device.distance
            self._device.clear_interrupt()
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        if centimetres is None:
            return NotReady("no target in range (up to 4 m): nothing in front of the sensor")
        return Reading({"distance": float(centimetres) * 10.0})


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Vl53l1x:
    """Check the model id, load ST's default settings and start ranging.

    Raises:
        ConfigError: ``options`` holds a key (it takes none).
        SensorError: nothing answers at ``address``, or another part does.
    """
    check_options(PART, options, {})
    import adafruit_vl53l1x

    try:
        device = adafruit_vl53l1x.VL53L1X(i2c, address)
        device.start_ranging()
    except (OSError, ValueError) as exc:
        raise did_not_answer(PART, address, exc) from exc
    except RuntimeError as exc:  # "Wrong sensor ID or type!"
        raise SensorError(
            f"sensor {PART} at {address:#04x} is not a VL53L1X ({exc}): `suitcase edge scan` "
            "shows what is on the bus"
        ) from exc
    return Vl53l1x(device, address)
