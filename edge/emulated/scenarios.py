"""Scenarios: the environment an emulated bus measures, as a function of time.

A scenario is a callable ``values(now) -> {quantity: value}``, deterministic given its seed: the
same ``now`` always gives the same values, so a chip that converts each quantity separately still
sees one consistent environment. The noise is smooth value noise keyed by (seed, time), not a
stream of random numbers, so it does not depend on how often anyone asks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kits.errors import ConfigError

__all__ = [
    "SCENARIOS",
    "BinFilling",
    "Footpath",
    "OfficeDay",
    "OfficePower",
    "ReadOver",
    "Scenario",
    "ScenarioFactory",
    "StreetAir",
    "VibrationBursts",
    "get_scenario",
]

Scenario = Callable[[float], Mapping[str, float]]
ScenarioFactory = Callable[[int], Scenario]

_DAY_S = 86400.0


@runtime_checkable
class ReadOver(Protocol):
    """A scenario whose drivers report something over a time, not an instant (passes counted in a
    burst, a clamp's RMS volts): what they would report for ``[start, end)``, for simulated history."""

    def read_over(self, start: float, end: float) -> Mapping[str, float]: ...


def _smooth_noise(seed: int, channel: str, now: float, period_s: float) -> float:
    """Return noise in -1..1 that varies smoothly over ``period_s``, deterministic in its inputs."""
    k = math.floor(now / period_s)
    frac = now / period_s - k
    a = random.Random(f"{seed}:{channel}:{k}").uniform(-1.0, 1.0)
    b = random.Random(f"{seed}:{channel}:{k + 1}").uniform(-1.0, 1.0)
    w = frac * frac * (3.0 - 2.0 * frac)  # smoothstep: no kinks at the knots
    return a + (b - a) * w


def _ramp(x: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, smooth in between."""
    if x <= start:
        return 0.0
    if x >= end:
        return 1.0
    f = (x - start) / (end - start)
    return f * f * (3.0 - 2.0 * f)


@dataclass(frozen=True, slots=True)
class OfficeDay:
    """An office room on working days: heating from 07:00, people 08:30-17:30, setback at night.

    Temperature runs from about 18 Cel at night to 21.5 Cel heated and up to 23.5 Cel in a full
    afternoon; humidity rises with occupancy from about 38 to 48 %RH; pressure follows a slow
    weather wave (+-8 hPa over about 3.5 days) around 1013 hPa with the small semi-diurnal tide.
    Saturdays and Sundays stay in setback. Epoch day 0 (1970-01-01) was a Thursday.

    CO2 follows occupancy through the room's air change (a first-order lag of about 40 min):
    about 420 ppm at night, rising to about 1200 ppm late morning, dipping over lunch
    (12:00-13:00) and climbing again in the afternoon. The VOC index rises with it; light is
    about 450 lx while lit.

    Args:
        seed: selects the noise; equal seeds give equal values at equal times.
        utc_offset_h: the room's local time offset from UTC, for the working-day clock.
    """

    seed: int
    utc_offset_h: float = 0.0

    def _people(self, local: float) -> float:
        hour = (local % _DAY_S) / 3600.0
        if (int(local // _DAY_S) + 3) % 7 >= 5:
            return 0.0
        lunch = 0.6 * (_ramp(hour, 11.9, 12.1) - _ramp(hour, 12.9, 13.1))
        return _ramp(hour, 8.0, 9.0) - _ramp(hour, 17.0, 18.0) - lunch

    def _co2(self, local: float) -> float:
        # First-order response of the room to the occupancy over the last 4 h, in 10 min steps.
        tau = 40 * 60.0
        total = weight = 0.0
        for k in range(24):
            w = math.exp(-k * 600.0 / tau)
            total += w * self._people(local - k * 600.0)
            weight += w
        return 420.0 + 900.0 * total / weight

    def __call__(self, now: float) -> dict[str, float]:
        local = now + self.utc_offset_h * 3600.0
        hour = (local % _DAY_S) / 3600.0
        weekday = (int(local // _DAY_S) + 3) % 7  # 0 = Monday
        working = weekday < 5
        heating = (_ramp(hour, 6.5, 8.0) - _ramp(hour, 18.0, 20.0)) if working else 0.0
        people = (_ramp(hour, 8.0, 9.0) - _ramp(hour, 17.0, 18.0)) if working else 0.0
        afternoon = people * _ramp(hour, 9.0, 15.0)
        temperature = 18.0 + 3.5 * heating + 2.0 * afternoon
        humidity = 38.0 + 8.0 * people + 2.0 * math.sin(2 * math.pi * local / (3.3 * _DAY_S))
        weather = 8.0 * math.sin(2 * math.pi * now / (3.5 * _DAY_S) + self.seed % 7)
        tide = 0.5 * math.cos(4 * math.pi * hour / 24.0)
        pressure = 1013.0 + weather + tide
        co2 = self._co2(local)
        lit = people if working else 0.0
        values = _background(self.seed, now)
        values.update(
            {
                "temperature": temperature + 0.15 * _smooth_noise(self.seed, "t", now, 120.0),
                "humidity": humidity + 0.8 * _smooth_noise(self.seed, "h", now, 90.0),
                "pressure": pressure + 0.05 * _smooth_noise(self.seed, "p", now, 60.0),
                "co2": co2 + 15.0 * _smooth_noise(self.seed, "c", now, 300.0),
                "voc_index": 100.0 + 0.12 * (co2 - 420.0) + 5.0 * _smooth_noise(self.seed, "v", now, 200.0),
                "illuminance": 5.0
                + 450.0 * lit
                + (2.0 + 18.0 * lit) * _smooth_noise(self.seed, "l", now, 60.0),
            }
        )
        return values


def _background(seed: int, now: float) -> dict[str, float]:
    """Quiet values of every quantity, so any chip on any scenario's bus reads something plausible."""
    return {
        "temperature": 20.0 + 0.1 * _smooth_noise(seed, "bt", now, 120.0),
        "humidity": 45.0 + 0.5 * _smooth_noise(seed, "bh", now, 90.0),
        "pressure": 1013.0 + 0.05 * _smooth_noise(seed, "bp", now, 60.0),
        "co2": 430.0 + 10.0 * _smooth_noise(seed, "bc", now, 300.0),
        "voc_index": 100.0 + 3.0 * _smooth_noise(seed, "bv", now, 200.0),
        "pm1_0": 3.0 + 0.5 * _smooth_noise(seed, "b1", now, 120.0),
        "pm2_5": 5.0 + 0.8 * _smooth_noise(seed, "b2", now, 120.0),
        "pm10": 8.0 + 1.0 * _smooth_noise(seed, "b3", now, 120.0),
        "illuminance": 300.0 + 10.0 * _smooth_noise(seed, "bl", now, 60.0),
        "distance": 1200.0 + 2.0 * _smooth_noise(seed, "bd", now, 5.0),
        "acceleration_x": 0.02 * _smooth_noise(seed, "bx", now, 0.05),
        "acceleration_y": 0.02 * _smooth_noise(seed, "by", now, 0.05),
        "acceleration_z": 9.806 + 0.02 * _smooth_noise(seed, "bz", now, 0.05),
        "voltage_a0": 1.8 + 0.01 * _smooth_noise(seed, "a0", now, 600.0),
        "voltage_a1": 0.4 + 0.05 * _smooth_noise(seed, "a1", now, 2.0),
        "voltage_a2": 0.0,
        "voltage_a3": 1.65,
    }


@dataclass(frozen=True, slots=True)
class StreetAir:
    """Air at a street-side lamp post: traffic peaks of particulate matter at rush hours.

    PM2.5 sits at about 6 ug/m3 at night and rises to about 35 ug/m3 in the morning (07:00-09:00)
    and evening (16:00-18:30) rush hours on working days, with short spikes as lorries pass
    (one every few minutes in the peaks); PM1.0 and PM10 follow. Outdoor temperature and humidity
    swing over the day; daylight peaks at about 40 000 lx at noon.
    """

    seed: int
    utc_offset_h: float = 0.0

    def __call__(self, now: float) -> dict[str, float]:
        local = now + self.utc_offset_h * 3600.0
        hour = (local % _DAY_S) / 3600.0
        working = (int(local // _DAY_S) + 3) % 7 < 5
        rush = (_ramp(hour, 6.5, 7.5) - _ramp(hour, 8.5, 9.5)) + (
            _ramp(hour, 15.5, 16.5) - _ramp(hour, 18.0, 19.0)
        )
        traffic = (1.0 if working else 0.4) * rush + 0.15 * (_ramp(hour, 6.0, 7.0) - _ramp(hour, 21.0, 23.0))
        lorry = max(0.0, _smooth_noise(self.seed, "lorry", now, 45.0)) ** 6 * traffic
        pm25 = 6.0 + 29.0 * traffic + 60.0 * lorry + 1.0 * _smooth_noise(self.seed, "pm", now, 120.0)
        daylight = max(0.0, math.sin(math.pi * (hour - 6.0) / 13.0)) if 6.0 <= hour <= 19.0 else 0.0
        values = _background(self.seed, now)
        values.update(
            {
                "temperature": 9.0 + 6.0 * daylight + 0.3 * _smooth_noise(self.seed, "t", now, 600.0),
                "humidity": 85.0 - 25.0 * daylight + 2.0 * _smooth_noise(self.seed, "h", now, 600.0),
                "pm1_0": max(0.0, 0.6 * pm25),
                "pm2_5": max(0.0, pm25),
                "pm10": max(0.0, 1.6 * pm25 + 4.0),
                "co2": 420.0 + 60.0 * traffic,
                "voc_index": 100.0 + 80.0 * traffic + 150.0 * lorry,
                "illuminance": 40000.0 * daylight**1.5 + 2.0,
            }
        )
        return values


@dataclass(frozen=True, slots=True)
class BinFilling:
    """A public waste bin filling over a week, emptied on Monday mornings.

    The ranger in the lid sees the bottom at 900 mm when empty; the bin fills faster in the
    afternoons and at weekends, to about 150 mm below the lid before collection (Monday 06:00).
    """

    seed: int
    empty_mm: float = 900.0
    full_mm: float = 120.0

    def __call__(self, now: float) -> dict[str, float]:
        week_s = 7 * _DAY_S
        # Epoch day 0 was a Thursday: Monday 06:00 is 4 days and 6 hours into each epoch week.
        since = (now - (4 * _DAY_S + 6 * 3600.0)) % week_s
        days = since / _DAY_S
        # Use accumulates by day with an afternoon bump; weekends (days 5, 6) count double.
        fill = 0.0
        whole = int(days)
        for d in range(whole):
            fill += 2.0 if d >= 5 else 1.0
        part = days - whole
        fill += (2.0 if whole >= 5 else 1.0) * _ramp(part, 0.25, 0.85)
        fraction = min(1.0, fill / 9.0)
        level = self.empty_mm - (self.empty_mm - self.full_mm) * fraction
        values = _background(self.seed, now)
        values["distance"] = level + 3.0 * _smooth_noise(self.seed, "d", now, 7.0)
        return values


@dataclass(frozen=True, slots=True)
class VibrationBursts:
    """A footbridge or machine base: quiet, with bursts of 12 Hz vibration.

    A burst of about 20 s starts every 10 minutes (a tram or a pump cycle), with a peak amplitude
    of about 2 m/s2 on z and a third of it across; between bursts only sensor noise. Adc channel
    a3 carries a current clamp's 50 Hz signal (bias 1.65 V, 0.3 V peak while the pump runs).
    """

    seed: int
    frequency_hz: float = 12.0

    def __call__(self, now: float) -> dict[str, float]:
        phase = now % 600.0
        envelope = _ramp(phase, 0.0, 3.0) - _ramp(phase, 17.0, 20.0)
        amp = 2.0 * envelope
        wave = math.sin(2 * math.pi * self.frequency_hz * now)
        cross = math.sin(2 * math.pi * self.frequency_hz * now + 1.0)
        noise = 0.02
        values = _background(self.seed, now)
        values.update(
            {
                "acceleration_x": amp / 3 * cross + noise * _smooth_noise(self.seed, "x", now, 0.01),
                "acceleration_y": amp / 3 * wave + noise * _smooth_noise(self.seed, "y", now, 0.01),
                "acceleration_z": 9.806 + amp * wave + noise * _smooth_noise(self.seed, "z", now, 0.01),
                "voltage_a3": 1.65 + 0.3 * envelope * math.sin(2 * math.pi * 50.0 * now),
            }
        )
        return values


@dataclass(frozen=True, slots=True)
class Footpath:
    """A ranger on a lamp post looking across a footpath at a wall ``wall_mm`` away.

    Time is cut into 10 s slots; each slot holds 0, 1 or 2 passers-by (from the seed), the first
    starting 0.5-3.5 s into the slot, the second 5.0-8.0 s, each in the beam for ``pass_s``
    at 450-900 mm (a walker or a cyclist on the near or far side). Passes never overlap or cross a
    slot boundary, so :meth:`passes` gives the exact number whose end falls in a time range.
    """

    seed: int
    wall_mm: float = 1500.0
    pass_s: float = 0.6
    slot_s: float = 10.0

    def _slot(self, k: int) -> list[tuple[float, float]]:
        """The passes of slot ``k``: (start time, range in mm)."""
        rng = random.Random(f"{self.seed}:footpath:{k}")
        base = k * self.slot_s
        out: list[tuple[float, float]] = []
        for low in (0.5, 5.0):
            start = base + low + rng.uniform(0.0, 3.0)
            mm = rng.uniform(450.0, 900.0)
            if rng.random() < 0.6:
                out.append((start, mm))
        return out

    def passes(self, start: float, end: float) -> int:
        """Return how many passes end in [start, end)."""
        count = 0
        for k in range(math.floor(start / self.slot_s) - 1, math.floor(end / self.slot_s) + 1):
            count += sum(1 for t, _ in self._slot(k) if start <= t + self.pass_s < end)
        return count

    def read_over(self, start: float, end: float) -> dict[str, float]:
        """The values at ``end`` with every pass that ended in ``[start, end)`` counted."""
        values = self(end)
        values["passes"] = float(self.passes(start, end))
        return values

    def __call__(self, now: float) -> dict[str, float]:
        distance = self.wall_mm
        for t, mm in self._slot(math.floor(now / self.slot_s)):
            if t <= now < t + self.pass_s:
                distance = mm
        values = _background(self.seed, now)
        values["distance"] = distance + 3.0 * _smooth_noise(self.seed, "d", now, 0.5)
        return values


@dataclass(frozen=True, slots=True)
class OfficePower:
    """The office's distribution board: an office day's climate (:class:`OfficeDay`) with a current
    clamp on ADC channel a0, read as RMS volts by the ADS1x15 (an SCT-013-030: 1 V at 30 A).

    The current follows the people: about 2 A at night and at weekends (fridges, servers), up to
    about 16 A on a working day, with a little noise (more when people are in); the clamp's output
    is a 50 Hz sine around a 1.65 V bias.
    """

    seed: int
    amps_per_volt: float = 30.0

    def amps(self, now: float) -> float:
        hour = (now % _DAY_S) / 3600.0
        working = (int(now // _DAY_S) + 3) % 7 < 5
        people = (_ramp(hour, 8.0, 9.0) - _ramp(hour, 17.0, 18.0)) if working else 0.0
        noise = _smooth_noise(self.seed, "amps", now, 300.0)
        return 2.0 + 13.0 * people + (0.05 + 0.8 * people) * noise  # the fridge cycles at night too

    def rms_volts(self, now: float) -> float:
        """The clamp's RMS output at ``now``: what the ADS1x15 reports for channel a0."""
        return self.amps(now) / self.amps_per_volt

    def read_over(self, start: float, end: float) -> dict[str, float]:
        values = OfficeDay(self.seed)(end)
        values["voltage_a0"] = self.rms_volts(end)
        return values

    def __call__(self, now: float) -> dict[str, float]:
        values = OfficeDay(self.seed)(now)
        peak = self.rms_volts(now) * math.sqrt(2.0)
        values["voltage_a0"] = 1.65 + peak * math.sin(2 * math.pi * 50.0 * now)
        return values


def _office_day(seed: int) -> Scenario:
    return OfficeDay(seed)


SCENARIOS: dict[str, ScenarioFactory] = {
    "office-day": _office_day,
    "street-air": StreetAir,
    "bin-filling": BinFilling,
    "vibration-bursts": VibrationBursts,
    "footpath": Footpath,
    "office-power": OfficePower,
}


def get_scenario(name: str, *, seed: int) -> Scenario:
    """Return the scenario called ``name``, seeded with ``seed``.

    Raises:
        ConfigError: no scenario has that name; the message lists the known ones.
    """
    factory = SCENARIOS.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown scenario {name!r}: use one of {', '.join(sorted(SCENARIOS))} "
            "(the `scenario` field of the device config)"
        )
    return factory(seed)
