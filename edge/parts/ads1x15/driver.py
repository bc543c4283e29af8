"""TI ADS1115 / ADS1015: voltages of up to four analog channels, over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_ads1x15``) in single-shot mode. Each read
converts the configured channels once (soil moisture probes, sound level meters); a channel
listed in ``rms`` is burst-sampled instead (``rms_samples`` conversions at the part's fastest
data rate, 860 SPS on the ADS1115) and reports the RMS of its AC part, for current clamps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edge.drivers._common import check_options, did_not_answer, read_register
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import ConfigError, SensorError

__all__ = ["INFO", "Ads1x15", "create", "probe"]

PART = "ads1x15"
_CHANNELS = ("a0", "a1", "a2", "a3")
_GAINS = (2 / 3, 1, 2, 4, 8, 16)


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify an ADS1x15 by its comparator thresholds at their reset values (0x8000, 0x7FFF).

    The part has no id register; the Adafruit driver writes the same values, so this holds for a
    part it configured too.
    """
    lo = read_register(i2c, address, b"\x02", 2)
    hi = read_register(i2c, address, b"\x03", 2)
    return "thresholds 0x8000/0x7fff (no id register)" if lo == b"\x80\x00" and hi == b"\x7f\xff" else None


INFO = driver_info(__file__, probe=probe)


class Ads1x15:
    """An ADS1x15 and its channels; create it with :func:`create`."""

    def __init__(
        self, device: Any, address: int, channels: list[str], rms: set[str], rms_samples: int
    ) -> None:
        from adafruit_ads1x15.analog_in import AnalogIn

        self._device = device
        self._address = address
        self._inputs = {c: AnalogIn(device, _CHANNELS.index(c)) for c in channels}
        self._rms = rms
        self._rms_samples = rms_samples
        self._fast_rate = max(device.rates)

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Convert each channel once (or burst-sample the RMS ones); return volts.

        Raises:
            SensorError: the part did not answer.
        """
        values: dict[str, float] = {}
        try:
            for channel, analog in self._inputs.items():
                if channel in self._rms:
                    values[f"voltage_{channel}"] = self._burst_rms(analog)
                else:
                    values[f"voltage_{channel}"] = float(analog.voltage)
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        return Reading(values)

    def _burst_rms(self, analog: Any) -> float:
        normal = self._device.data_rate
        self._device.data_rate = self._fast_rate
        try:
            samples = [float(analog.voltage) for _ in range(self._rms_samples)]
        finally:
            self._device.data_rate = normal
        mean = sum(samples) / len(samples)
        return math.sqrt(sum((v - mean) ** 2 for v in samples) / len(samples))


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Ads1x15:
    """Configure the ADS1x15 at ``address``.

    Options:
        model: ``ads1115`` (16-bit, default) or ``ads1015`` (12-bit).
        gain: 2/3, 1 (default, +-4.096 V), 2, 4, 8 or 16.
        channels: the channels to read, default ``[a0, a1, a2, a3]``.
        rms: channels to burst-sample for RMS (current clamps), default none.
        rms_samples (int, 16-2048): conversions per RMS burst, default 128.

    Raises:
        ConfigError: an unknown or invalid option.
        SensorError: nothing answers at ``address``.
    """

    def _model(value: Any) -> str:
        if value not in ("ads1115", "ads1015"):
            raise ValueError("use ads1115 or ads1015")
        return str(value)

    def _gain(value: Any) -> float:
        for gain in _GAINS:
            if isinstance(value, (int, float)) and math.isclose(value, gain, rel_tol=1e-3):
                return gain
        raise ValueError("use one of 0.6667, 1, 2, 4, 8, 16")

    def _channels(value: Any) -> list[str]:
        if not isinstance(value, list) or not value or any(c not in _CHANNELS for c in value):
            raise ValueError(f"use a list of {', '.join(_CHANNELS)}")
        return [str(c) for c in value]

    def _count(value: Any) -> int:
        if not isinstance(value, int) or not 16 <= value <= 2048:
            raise ValueError("use a whole number from 16 to 2048")
        return value

    opts: dict[str, Any] = check_options(
        PART,
        options,
        {"model": _model, "gain": _gain, "channels": _channels, "rms": _channels, "rms_samples": _count},
    )
    channels = opts.get("channels", list(_CHANNELS))
    rms = set(opts.get("rms", []))
    if not rms <= set(channels):
        raise ConfigError(
            f"sensor {PART}: rms channels {sorted(rms - set(channels))} are not in channels: add them"
        )
    model: Any
    if opts.get("model", "ads1115") == "ads1015":
        from adafruit_ads1x15.ads1015 import ADS1015 as model
    else:
        from adafruit_ads1x15.ads1115 import ADS1115 as model
    try:
        device = model(i2c, gain=opts.get("gain", 1), address=address)
        return Ads1x15(device, address, channels, rms, opts.get("rms_samples", 128))
    except (OSError, ValueError) as exc:
        raise did_not_answer(PART, address, exc) from exc
    except RuntimeError as exc:
        raise SensorError(f"sensor {PART} at {address:#04x} did not start ({exc}): check the wiring") from exc
