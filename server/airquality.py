"""Honest air-quality figures for the public pages: pure functions, no database, no web.

From (time, value) readings of ``pm2_5`` or ``pm10`` in ug/m3 (raw samples or hourly means):

- :func:`hourly_means`: the mean of each UTC clock hour that has readings.
- :func:`rolling_24h`: the mean of the hourly means of the last 24 complete hours, for display,
  only with at least 18 of the 24 (75 %); otherwise no value and the reason "not enough data".
- :func:`daily_means`: calendar-day means in the organisation's time zone, each with at least
  75 % of the hours that day has (18 of 24; 18 of 23 and 19 of 25 on DST change days),
  compared with the WHO 2021 24-hour guideline levels (:data:`WHO_2021_24H`).
- :func:`eaqi_band`: the band of the European Air Quality Index (:data:`EAQI_VERSION`).
- :func:`freshness`: how old the latest reading is, and whether the sensor counts as stale.
- :func:`humidity_caveat`: low-cost optical PM sensors read high above ~85 %RH (water uptake
  by particles), so figures from such hours carry a caveat.

Times are UTC epoch seconds or timezone-aware datetimes; a naive datetime is refused. Every
figure says its averaging period, its source, and why it is missing when it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "COVERAGE",
    "EAQI_BANDS",
    "EAQI_LIMITS",
    "EAQI_SOURCE",
    "EAQI_VERSION",
    "HUMIDITY_CAVEAT_RH",
    "NOT_ENOUGH_DATA",
    "WHO_2021_24H",
    "WHO_SOURCE",
    "DayMean",
    "EaqiBand",
    "Freshness",
    "Pollutant",
    "Reading",
    "RollingMean",
    "daily_means",
    "eaqi_band",
    "freshness",
    "hourly_means",
    "humidity_caveat",
    "required_hours",
    "rolling_24h",
]

Pollutant = Literal["pm2_5", "pm10"]
Reading = tuple[float | datetime, float]

COVERAGE = 0.75
NOT_ENOUGH_DATA = "not enough data"
HOUR = timedelta(hours=1)

WHO_2021_24H: dict[str, float] = {"pm2_5": 15.0, "pm10": 45.0}
WHO_SOURCE = (
    "WHO global air quality guidelines (2021): 24-hour AQG levels PM2.5 15 ug/m3, PM10 45 ug/m3 "
    "(99th percentile: 3-4 exceedance days per year)"
)

EAQI_VERSION = "European Air Quality Index (EEA), 2024 revision, in use since 2025"
EAQI_SOURCE = (
    "EEA European Air Quality Index, revised 2024 to follow the WHO 2021 guidelines; bands from "
    "ETC HE Report 2024/17 (table 5.2), hourly concentrations in ug/m3"
)
EAQI_BANDS: tuple[str, ...] = ("good", "fair", "moderate", "poor", "very poor", "extremely poor")
# Upper limits (inclusive) of the first five bands; above the fifth is "extremely poor".
EAQI_LIMITS: dict[str, tuple[float, ...]] = {
    "pm2_5": (5.0, 15.0, 50.0, 90.0, 140.0),
    "pm10": (15.0, 45.0, 120.0, 195.0, 270.0),
}

HUMIDITY_CAVEAT_RH = 85.0


@dataclass(frozen=True, slots=True)
class RollingMean:
    """The rolling 24 h mean: ``value`` is None, with ``reason``, below 75 % coverage."""

    value: float | None
    hours: int
    required: int
    start: datetime
    end: datetime
    reason: str | None
    period: str = "rolling 24-hour mean of hourly means"


@dataclass(frozen=True, slots=True)
class DayMean:
    """A calendar-day mean in the organisation's time zone, compared with the WHO guideline."""

    day: date
    value: float | None
    hours: int
    hours_in_day: int
    required: int
    reason: str | None
    who_guideline: float
    exceeds_who: bool | None
    period: str = "calendar-day mean of hourly means, local time"


@dataclass(frozen=True, slots=True)
class EaqiBand:
    """A European Air Quality Index band (1 good .. 6 extremely poor) of one concentration."""

    level: int
    name: str
    pollutant: str
    value: float
    version: str = EAQI_VERSION


@dataclass(frozen=True, slots=True)
class Freshness:
    """How old the newest reading is; ``stale`` when older than the allowed age or absent."""

    last: datetime | None
    age: timedelta | None
    stale: bool


def _check_pollutant(pollutant: str) -> None:
    if pollutant not in WHO_2021_24H:
        raise ValueError(
            f"unknown pollutant {pollutant!r}: use pm2_5 or pm10 (names from kits/quantities.py)"
        )


def _utc(moment: float | datetime) -> datetime:
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(
                f"naive datetime {moment.isoformat()}: give timezone-aware times (e.g. tzinfo=UTC) "
                "or UTC epoch seconds"
            )
        return moment.astimezone(UTC)
    return datetime.fromtimestamp(moment, UTC)


def _hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_of(moment: float | datetime) -> datetime:
    # Epoch seconds are floored in seconds: converting first would round to the microsecond and
    # could move 10:59:59.9999997 into the next hour.
    if isinstance(moment, datetime):
        return _hour_start(_utc(moment))
    return datetime.fromtimestamp(math.floor(moment / 3600) * 3600, UTC)


def hourly_means(readings: Iterable[Reading]) -> dict[datetime, float]:
    """Return the mean of the readings in each UTC clock hour, keyed by the hour's start (UTC).

    Hours without a reading are absent (gaps stay gaps). Non-finite values are skipped. Hourly
    means given as input come back unchanged, provided each is stamped inside its hour.
    """
    sums: dict[datetime, list[float]] = {}
    for moment, value in readings:
        if not math.isfinite(value):
            continue
        acc = sums.setdefault(_hour_of(moment), [0.0, 0.0])
        acc[0] += value
        acc[1] += 1
    return {hour: total / count for hour, (total, count) in sorted(sums.items())}


def required_hours(hours_in_period: int) -> int:
    """Return how many hourly means 75 % coverage needs (18 of 24, 18 of 23, 19 of 25)."""
    return math.ceil(COVERAGE * hours_in_period - 1e-9)


def rolling_24h(hourly: Mapping[datetime, float], now: float | datetime) -> RollingMean:
    """Return the mean of the hourly means of the 24 complete hours before ``now``.

    The window is [start of ``now``'s hour - 24 h, start of ``now``'s hour): the running hour is
    not complete and is left out. Needs 18 of the 24 hours; otherwise ``value`` is None and
    ``reason`` says "not enough data" with the count.
    """
    end = _hour_of(now)
    start = end - 24 * HOUR
    values = [v for h, v in hourly.items() if start <= _utc(h) < end]
    need = required_hours(24)
    if len(values) < need:
        reason = f"{NOT_ENOUGH_DATA}: {len(values)} of 24 hourly means (needs {need})"
        return RollingMean(None, len(values), need, start, end, reason)
    return RollingMean(math.fsum(values) / len(values), len(values), need, start, end, None)


def _day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def daily_means(hourly: Mapping[datetime, float], pollutant: Pollutant, tz: ZoneInfo) -> list[DayMean]:
    """Return each calendar day's mean in ``tz``, from the first to the last day with data.

    A day's hours are the hourly means whose start falls on that local date; the day counts
    only with 75 % of the hours it has (23 or 25 on DST change days). Each day is compared with
    the WHO 2021 24-hour guideline of ``pollutant`` (:data:`WHO_SOURCE`).

    Raises:
        ValueError: ``pollutant`` is not pm2_5 or pm10.
    """
    _check_pollutant(pollutant)
    guideline = WHO_2021_24H[pollutant]
    by_day: dict[date, list[float]] = {}
    for hour, value in hourly.items():
        by_day.setdefault(_utc(hour).astimezone(tz).date(), []).append(value)
    if not by_day:
        return []
    days: list[DayMean] = []
    day, last = min(by_day), max(by_day)
    while day <= last:
        start, end = _day_bounds(day, tz)
        hours_in_day = round((end - start) / HOUR)
        values = by_day.get(day, [])
        need = required_hours(hours_in_day)
        if len(values) < need:
            reason = f"{NOT_ENOUGH_DATA}: {len(values)} of {hours_in_day} hourly means (needs {need})"
            days.append(DayMean(day, None, len(values), hours_in_day, need, reason, guideline, None))
        else:
            mean = math.fsum(values) / len(values)
            days.append(
                DayMean(day, mean, len(values), hours_in_day, need, None, guideline, mean > guideline)
            )
        day += timedelta(days=1)
    return days


def eaqi_band(pollutant: Pollutant, value: float) -> EaqiBand:
    """Return the European Air Quality Index band of a concentration in ug/m3.

    A value equal to a band's upper limit is in that band (PM2.5 15.0 is "fair"). The revised
    index (:data:`EAQI_VERSION`) is defined on hourly concentrations: give an hourly mean.

    Raises:
        ValueError: unknown pollutant, or a negative or non-finite value.
    """
    _check_pollutant(pollutant)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{pollutant} {value} ug/m3 is not a concentration: give a finite value >= 0")
    limits = EAQI_LIMITS[pollutant]
    level = next((i + 1 for i, limit in enumerate(limits) if value <= limit), len(limits) + 1)
    return EaqiBand(level, EAQI_BANDS[level - 1], pollutant, value)


def freshness(last: float | datetime | None, now: float | datetime, stale_after: timedelta) -> Freshness:
    """Return the age of the newest reading and whether it is stale (older than ``stale_after``).

    No reading at all is stale. A reading stamped after ``now`` (clock skew) has age zero.
    """
    if last is None:
        return Freshness(None, None, True)
    last_utc = _utc(last)
    age = max(_utc(now) - last_utc, timedelta(0))
    return Freshness(last_utc, age, age > stale_after)


def humidity_caveat(relative_humidity: Iterable[float], threshold: float = HUMIDITY_CAVEAT_RH) -> bool:
    """Return True when any relative humidity (%RH) of the period is above ``threshold`` (85 %).

    Low-cost optical PM sensors count water-swollen particles, so PM reads high in such hours:
    show the caveat next to the figures of that period.
    """
    return any(rh > threshold for rh in relative_humidity if math.isfinite(rh))
