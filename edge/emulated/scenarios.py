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

from kits.errors import ConfigError

__all__ = ["SCENARIOS", "OfficeDay", "Scenario", "ScenarioFactory", "get_scenario"]

Scenario = Callable[[float], Mapping[str, float]]
ScenarioFactory = Callable[[int], Scenario]

_DAY_S = 86400.0


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

    Args:
        seed: selects the noise; equal seeds give equal values at equal times.
        utc_offset_h: the room's local time offset from UTC, for the working-day clock.
    """

    seed: int
    utc_offset_h: float = 0.0

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
        return {
            "temperature": temperature + 0.15 * _smooth_noise(self.seed, "t", now, 120.0),
            "humidity": humidity + 0.8 * _smooth_noise(self.seed, "h", now, 90.0),
            "pressure": pressure + 0.05 * _smooth_noise(self.seed, "p", now, 60.0),
        }


def _office_day(seed: int) -> Scenario:
    return OfficeDay(seed)


SCENARIOS: dict[str, ScenarioFactory] = {
    "office-day": _office_day,
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
