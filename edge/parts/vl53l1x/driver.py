"""ST VL53L1X: time-of-flight distance (bin fill level, people or bikes passing), over I2C.

Wraps the Adafruit CircuitPython driver (``adafruit_vl53l1x``) in long-distance mode, ranging
continuously. Two modes (option ``mode``):

- ``distance`` (default): a read returns the latest range once the part flags new data, with a
  50 ms timing budget; :class:`~edge.drivers.base.NotReady` before that or when no target is in
  range (up to 4 m).
- ``passes``: the ranger looks across a footpath or cycle lane at a wall or kerb ``baseline_mm``
  away. A read burst-samples the range for ``burst_s`` seconds at ``rate_hz`` (the timing budget
  is the longest that fits the rate) and counts passes: the range drops below
  ``baseline_mm - threshold_mm`` (someone is in the beam) and then recovers above
  ``baseline_mm - threshold_mm + hysteresis_mm``; a pass counts when it ends, so one that spans two
  reads counts once. It returns ``passes`` (count during this read's burst) and ``distance`` (the
  last valid range). Passes between bursts are not seen: set ``burst_s`` to the sensor's
  ``interval_s`` to count every pass (the read then takes the whole interval). A sample with no
  target in range counts as the baseline (nothing in the beam).

The driver reports centimetres; the wrapper converts to mm.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from edge.drivers._common import check_options, did_not_answer, read_register
from edge.drivers.base import I2CBus, NotReady, ReadContext, Reading
from edge.parts._facts import driver_info
from kits.errors import ConfigError, SensorError

__all__ = ["INFO", "Vl53l1x", "Vl53l1xPasses", "create", "probe"]

PART = "vl53l1x"
MAX_RANGE_MM = 4000.0
# The timing budgets (ms) the Adafruit driver accepts in long-distance mode.
_BUDGETS_MS = (20, 33, 50, 100, 200, 500)


def probe(i2c: I2CBus, address: int) -> str | None:
    """Identify a VL53L1X by its model id and module type (0x010F: 0xEA, 0xCC)."""
    data = read_register(i2c, address, b"\x01\x0f", 2)
    return "model id 0xea, module type 0xcc" if data == b"\xea\xcc" else None


INFO = driver_info(__file__, probe=probe)


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


class PassCounter:
    """Counts passes in a stream of ranges with hysteresis (pure; the driver feeds it).

    Args:
        baseline_mm: the range with nothing in the beam.
        threshold_mm: how much closer than the baseline a passer-by must be.
        hysteresis_mm: how far back towards the baseline the range must recover to end a pass.
    """

    def __init__(self, baseline_mm: float, threshold_mm: float, hysteresis_mm: float) -> None:
        self.enter_below = baseline_mm - threshold_mm
        self.leave_above = baseline_mm - threshold_mm + hysteresis_mm
        self.baseline_mm = baseline_mm
        self.occupied = False

    def feed(self, mm: float | None) -> int:
        """Take one range (None: no target, the same as the baseline); return 1 when a pass ends."""
        value = self.baseline_mm if mm is None else mm
        if not self.occupied:
            self.occupied = value < self.enter_below
            return 0
        if value > self.leave_above:
            self.occupied = False
            return 1
        return 0


class Vl53l1xPasses:
    """A VL53L1X counting passes in bursts; create it with :func:`create` and ``mode: passes``.

    Attributes:
        sleep: paces the burst, with ``monotonic`` its clock; tests on an emulated bus replace
            both (a fake clock and its advance).
    """

    def __init__(
        self, device: Any, address: int, counter: PassCounter, rate_hz: float, burst_s: float
    ) -> None:
        self._device = device
        self._address = address
        self._counter = counter
        self.rate_hz = rate_hz
        self.samples = max(1, round(burst_s * rate_hz))
        self.sleep: Callable[[float], None] = time.sleep
        self.monotonic: Callable[[], float] = time.monotonic

    def read(self, context: ReadContext) -> Reading | NotReady:
        """Sample a burst; return the passes that ended during it and the last valid range (mm).

        Raises:
            SensorError: the part did not answer during the burst.
        """
        period = 1.0 / self.rate_hz
        passes = 0
        last: float | None = None
        started = self.monotonic()
        try:
            for k in range(self.samples):
                if self._device.data_ready:
                    centimetres = self._device.distance
                    self._device.clear_interrupt()
                    mm = None if centimetres is None else float(centimetres) * 10.0
                    passes += self._counter.feed(mm)
                    if mm is not None:
                        last = mm
                wait = started + (k + 1) * period - self.monotonic()
                if wait > 0 and k + 1 < self.samples:
                    self.sleep(wait)
        except OSError as exc:
            raise did_not_answer(PART, self._address, exc) from exc
        values = {"passes": float(passes)}
        if last is not None:
            values["distance"] = last
        return Reading(values)


def _positive_mm(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_RANGE_MM:
        raise ValueError(f"use a distance in mm from 1 to {MAX_RANGE_MM:g}")
    return float(value)


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 50:
        raise ValueError("use a rate from 1 to 50 Hz (the shortest timing budget is 20 ms)")
    return float(value)


def _burst(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 3600:
        raise ValueError("use a duration from 0.1 to 3600 s")
    return float(value)


def _mode(value: Any) -> str:
    if value not in ("distance", "passes"):
        raise ValueError("use 'distance' or 'passes'")
    return str(value)


def create(i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Vl53l1x | Vl53l1xPasses:
    """Check the model id, load ST's default settings and start ranging.

    Options:
        mode: ``distance`` (default) or ``passes``.
        baseline_mm: passes mode, required: the range with nothing in the beam (the wall, the kerb).
        threshold_mm: passes mode: how much closer a passer-by is than the baseline, default 300.
        hysteresis_mm: passes mode: recovery needed to end a pass, default a third of threshold_mm.
        rate_hz: passes mode: samples per second, 1-50, default 20.
        burst_s: passes mode: seconds sampled per read, default 1.

    Raises:
        ConfigError: an unknown or invalid option, or passes options without ``mode: passes``.
        SensorError: nothing answers at ``address``, or another part does.
    """
    opts: dict[str, Any] = check_options(
        PART,
        options,
        {
            "mode": _mode,
            "baseline_mm": _positive_mm,
            "threshold_mm": _positive_mm,
            "hysteresis_mm": _positive_mm,
            "rate_hz": _rate,
            "burst_s": _burst,
        },
    )
    passes = opts.get("mode", "distance") == "passes"
    counter: PassCounter | None = None
    if passes:
        baseline = opts.get("baseline_mm")
        if not isinstance(baseline, float):
            raise ConfigError(
                f"sensor {PART}: mode passes needs baseline_mm, the range in mm with nothing in the beam "
                "(read it in mode distance first)"
            )
        threshold = float(opts.get("threshold_mm", 300.0))
        hysteresis = float(opts.get("hysteresis_mm", threshold / 3.0))
        if threshold >= baseline or hysteresis >= threshold:
            raise ConfigError(
                f"sensor {PART}: need hysteresis_mm ({hysteresis:g}) < threshold_mm ({threshold:g}) < "
                f"baseline_mm ({baseline:g}): correct them"
            )
        counter = PassCounter(baseline, threshold, hysteresis)
    else:
        extra = sorted(set(opts) - {"mode"})
        if extra:
            raise ConfigError(f"sensor {PART}: options {extra} need mode: passes")
    rate = float(opts.get("rate_hz", 20.0))
    budget = max(b for b in _BUDGETS_MS if b <= max(20.0, 1000.0 / rate)) if passes else 50
    import adafruit_vl53l1x

    try:
        device = adafruit_vl53l1x.VL53L1X(i2c, address)
        device.timing_budget = budget
        device.start_ranging()
    except (OSError, ValueError) as exc:
        raise did_not_answer(PART, address, exc) from exc
    except RuntimeError as exc:  # "Wrong sensor ID or type!"
        raise SensorError(
            f"sensor {PART} at {address:#04x} is not a VL53L1X ({exc}): `suitcase edge scan` "
            "shows what is on the bus"
        ) from exc
    if counter is not None:
        return Vl53l1xPasses(device, address, counter, rate, float(opts.get("burst_s", 1.0)))
    return Vl53l1x(device, address)
