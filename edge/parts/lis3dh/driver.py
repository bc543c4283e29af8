"""ST LIS3DH: acceleration and vibration RMS, over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_lis3dh``) at +-4 g and 400 Hz. One read is a
burst: ``samples`` samples (default 64) paced at ``rate_hz`` (default 400 Hz, so 160 ms), which
gives the mean acceleration per axis and the vibration RMS, the root mean square of the
acceleration's deviation from that mean over the burst (gravity and tilt removed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from edge.drivers._common import check_options, did_not_answer, read_register
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import SensorError

__all__ = ["INFO", "Lis3dh", "create", "probe"]

PART = "lis3dh"
_RATES = {1: 0b0001, 10: 0b0010, 25: 0b0011, 50: 0b0100, 100: 0b0101, 200: 0b0110, 400: 0b0111}
_RANGES = {2: 0b00, 4: 0b01, 8: 0b10, 16: 0b11}


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify a LIS3DH by WHO_AM_I (0x0F reads 0x33)."""
    data = read_register(i2c, address, b"\x0f", 1)
    return "who_am_i 0x33" if data == b"\x33" else None


INFO = driver_info(__file__)


class Lis3dh:
    """A LIS3DH sampled in bursts; create it with :func:`create`.

    Attributes:
        sleep: paces the burst; tests on an emulated bus may replace it.
    """

    def __init__(self, device: Any, address: int, samples: int, rate_hz: int) -> None:
        self._device = device
        self._address = address
        self.samples = samples
        self.rate_hz = rate_hz
        self.sleep: Callable[[float], None] = time.sleep

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Sample a burst; return the mean acceleration per axis and the vibration RMS (m/s2).

        Raises:
            SensorError: the part did not answer during the burst.
        """
        xs: list[float] = []
        ys: list[float] = []
        zs: list[float] = []
        period = 1.0 / self.rate_hz
        started = time.perf_counter()
        try:
            for k in range(self.samples):
                x, y, z = self._device.acceleration
                xs.append(float(x))
                ys.append(float(y))
                zs.append(float(z))
                wait = started + (k + 1) * period - time.perf_counter()
                if wait > 0 and k + 1 < self.samples:
                    self.sleep(wait)
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        n = len(xs)
        mx, my, mz = sum(xs) / n, sum(ys) / n, sum(zs) / n
        power = sum((x - mx) ** 2 + (y - my) ** 2 + (z - mz) ** 2 for x, y, z in zip(xs, ys, zs, strict=True))
        return Reading(
            {
                "acceleration_x": mx,
                "acceleration_y": my,
                "acceleration_z": mz,
                "vibration_rms": math.sqrt(power / n),
            }
        )


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Lis3dh:
    """Check WHO_AM_I, reboot and configure the LIS3DH at ``address``.

    Options:
        samples (int, 8-1024): samples per burst, default 64.
        rate_hz (int): 1, 10, 25, 50, 100, 200 or 400, default 400.
        range_g (int): 2, 4, 8 or 16, default 4.

    Raises:
        ConfigError: an unknown or invalid option.
        SensorError: nothing answers at ``address``, or another part does.
    """

    def _samples(value: Any) -> int:
        if not isinstance(value, int) or not 8 <= value <= 1024:
            raise ValueError("use a whole number from 8 to 1024")
        return value

    def _one_of(table: Mapping[int, int]) -> Callable[[Any], int]:
        def convert(value: Any) -> int:
            if value not in table:
                raise ValueError(f"use one of {', '.join(map(str, table))}")
            return int(value)

        return convert

    opts = check_options(
        PART, options, {"samples": _samples, "rate_hz": _one_of(_RATES), "range_g": _one_of(_RANGES)}
    )
    import adafruit_lis3dh

    try:
        device = adafruit_lis3dh.LIS3DH_I2C(i2c, address=address)
        device.range = _RANGES[opts.get("range_g", 4)]
        rate = opts.get("rate_hz", 400)
        device.data_rate = _RATES[rate]
    except (OSError, ValueError) as exc:
        raise did_not_answer(PART, address, exc) from exc
    except RuntimeError as exc:  # "Failed to find LIS3DH!"
        raise SensorError(
            f"sensor {PART} at {address:#04x} is not a LIS3DH ({exc}): `suitcase edge scan` shows "
            "what is on the bus"
        ) from exc
    return Lis3dh(device, address, opts.get("samples", 64), rate)
