"""Tests of server.airquality: hourly, rolling 24 h and calendar-day means, EAQI, freshness.

Property tests compare with an independent, deliberately plain computation (epoch arithmetic and
a walk over every hour), plus edge cases: gaps, DST days of 23 and 25 hours, days under 75 %.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.airquality import (
    EAQI_VERSION,
    NOT_ENOUGH_DATA,
    WHO_SOURCE,
    daily_means,
    eaqi_band,
    freshness,
    hourly_means,
    humidity_caveat,
    required_hours,
    rolling_24h,
)

CPH = ZoneInfo("Europe/Copenhagen")
T0 = datetime(2024, 3, 28, tzinfo=UTC).timestamp()  # spans the spring DST change (31 March)
H = 3600.0

readings_st = st.lists(
    st.tuples(
        st.floats(min_value=T0, max_value=T0 + 6 * 86400, allow_nan=False),
        st.floats(min_value=0, max_value=1000, allow_nan=False),
    ),
    max_size=300,
)


def plain_hourly(readings: list[tuple[float, float]]) -> dict[int, float]:
    groups: dict[int, list[float]] = {}
    for t, v in readings:
        groups.setdefault(int(t // H), []).append(v)
    return {k: sum(vs) / len(vs) for k, vs in groups.items()}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=150, deadline=None)
@given(readings_st)
def test_hourly_means_match_a_plain_computation(readings: list[tuple[float, float]]) -> None:
    """Test that hourly means equal grouping epoch seconds by integer hour."""
    got = hourly_means(readings)
    want = plain_hourly(readings)
    assert {int(h.timestamp() // H) for h in got} == set(want)
    for hour, value in got.items():
        assert hour.tzinfo is UTC and hour.minute == hour.second == 0
        assert _close(value, want[int(hour.timestamp() // H)])


@settings(max_examples=150, deadline=None)
@given(readings_st, st.floats(min_value=T0, max_value=T0 + 7 * 86400))
def test_rolling_24h_matches_a_plain_computation(readings: list[tuple[float, float]], now: float) -> None:
    """Test the rolling mean: the 24 complete hours before now, only with 18 of them present."""
    hourly = plain_hourly(readings)
    end = int(now // H)
    window = [hourly[k] for k in range(end - 24, end) if k in hourly]
    got = rolling_24h(hourly_means(readings), now)
    assert got.hours == len(window)
    if len(window) >= 18:
        assert got.reason is None and _close(got.value, sum(window) / len(window))
    else:
        assert got.value is None and got.reason is not None and got.reason.startswith(NOT_ENOUGH_DATA)


@settings(max_examples=100, deadline=None)
@given(readings_st, st.sampled_from(["Europe/Copenhagen", "UTC", "America/St_Johns", "Asia/Kolkata"]))
def test_daily_means_match_a_plain_computation(readings: list[tuple[float, float]], zone: str) -> None:
    """Test calendar-day means against a walk over every UTC hour converted to local time."""
    tz = ZoneInfo(zone)
    hourly = plain_hourly(readings)
    got = daily_means(hourly_means(readings), "pm10", tz)
    if not hourly:
        assert got == []
        return
    # the plain way: walk every hour from well before to well after, count hours per local date
    hours_per_day: dict[date, int] = {}
    values_per_day: dict[date, list[float]] = {}
    for k in range(int(T0 // H) - 48, int(T0 // H) + 9 * 24):
        local = datetime.fromtimestamp(k * H, UTC).astimezone(tz).date()
        hours_per_day[local] = hours_per_day.get(local, 0) + 1
        if k in hourly:
            values_per_day.setdefault(local, []).append(hourly[k])
    first, last = min(values_per_day), max(values_per_day)
    assert [d.day for d in got] == [first + timedelta(days=i) for i in range((last - first).days + 1)]
    for day in got:
        values = values_per_day.get(day.day, [])
        assert day.hours_in_day == hours_per_day[day.day]
        assert day.hours == len(values)
        if len(values) >= 0.75 * hours_per_day[day.day]:
            assert _close(day.value, sum(values) / len(values))
            assert day.exceeds_who == (sum(values) / len(values) > 45)
        else:
            assert day.value is None and day.exceeds_who is None
            assert day.reason is not None and day.reason.startswith(NOT_ENOUGH_DATA)


def _hours(
    start: datetime, count: int, value: float = 10.0, skip: set[int] | None = None
) -> list[tuple[datetime, float]]:
    return [(start + timedelta(hours=i), value) for i in range(count) if i not in (skip or set())]


def test_dst_spring_day_has_23_hours_and_needs_18() -> None:
    """Test that 31 March 2024 in Copenhagen has 23 hours: 18 suffice, 17 do not."""
    midnight = datetime(2024, 3, 31, tzinfo=CPH).astimezone(UTC)
    (day,) = [d for d in daily_means(hourly_means(_hours(midnight, 18)), "pm2_5", CPH)]
    assert (day.day, day.hours_in_day, day.required, day.value) == (date(2024, 3, 31), 23, 18, 10.0)
    (short,) = daily_means(hourly_means(_hours(midnight, 17)), "pm2_5", CPH)
    assert short.value is None and short.reason == f"{NOT_ENOUGH_DATA}: 17 of 23 hourly means (needs 18)"


def test_dst_autumn_day_has_25_hours_and_needs_19() -> None:
    """Test that 27 October 2024 in Copenhagen has 25 hours: 18 are not 75 %, 19 are."""
    midnight = datetime(2024, 10, 27, tzinfo=CPH).astimezone(UTC)
    (day,) = daily_means(hourly_means(_hours(midnight, 25)), "pm2_5", CPH)
    assert (day.hours, day.hours_in_day, day.required) == (25, 25, 19)
    (short,) = daily_means(hourly_means(_hours(midnight, 18)), "pm2_5", CPH)
    assert short.value is None and short.required == 19
    (enough,) = daily_means(hourly_means(_hours(midnight, 19)), "pm2_5", CPH)
    assert enough.value == 10.0


def test_a_day_below_75_percent_and_a_gap_day_are_not_enough_data() -> None:
    """Test a full day, a day with 17 of 24 hours and a day with nothing, in local time."""
    d1 = datetime(2024, 6, 10, tzinfo=CPH).astimezone(UTC)
    readings = _hours(d1, 24, 20.0) + _hours(d1 + timedelta(days=1), 24, 99.0, skip=set(range(17, 24)))
    readings += _hours(d1 + timedelta(days=3), 24, 5.0)
    days = daily_means(hourly_means(readings), "pm2_5", CPH)
    assert [d.day.day for d in days] == [10, 11, 12, 13]
    assert days[0].value == 20.0 and days[0].exceeds_who is True
    assert days[1].value is None and days[1].hours == 17
    assert days[2].value is None and days[2].hours == 0 and days[2].reason is not None
    assert days[3].value == 5.0 and days[3].exceeds_who is False
    assert days[0].who_guideline == 15.0 and "WHO" in WHO_SOURCE and "2021" in WHO_SOURCE


def test_local_days_are_not_utc_days() -> None:
    """Test that an hour late in the UTC evening belongs to the next Copenhagen day."""
    late = datetime(2024, 6, 10, 22, 30, tzinfo=UTC)  # 00:30 on 11 June in Copenhagen (CEST)
    (day,) = daily_means(hourly_means([(late, 1.0)]), "pm10", CPH)
    assert day.day == date(2024, 6, 11)


def test_rolling_24h_with_a_gap_and_exactly_18_hours() -> None:
    """Test that 18 hours in the window give a mean and 17 give "not enough data"."""
    now = datetime(2024, 6, 11, 12, 20, tzinfo=UTC)
    start = datetime(2024, 6, 10, 12, tzinfo=UTC)
    got = rolling_24h(hourly_means(_hours(start, 24, 8.0, skip=set(range(6)))), now)
    assert (got.value, got.hours, got.required) == (8.0, 18, 18)
    assert got.start == start and got.end == datetime(2024, 6, 11, 12, tzinfo=UTC)
    thin = rolling_24h(hourly_means(_hours(start, 24, 8.0, skip=set(range(7)))), now)
    assert thin.value is None and thin.reason == f"{NOT_ENOUGH_DATA}: 17 of 24 hourly means (needs 18)"


def test_the_running_hour_is_not_in_the_rolling_mean() -> None:
    """Test that readings of the incomplete current hour do not count yet."""
    now = datetime(2024, 6, 11, 12, 40, tzinfo=UTC)
    readings = [*_hours(datetime(2024, 6, 10, 12, tzinfo=UTC), 24, 10.0), (now - timedelta(minutes=5), 500.0)]
    assert rolling_24h(hourly_means(readings), now).value == 10.0


def test_raw_readings_average_within_the_hour() -> None:
    """Test that raw samples become one mean per hour and gaps stay absent."""
    t = datetime(2024, 1, 1, 10, tzinfo=UTC)
    got = hourly_means(
        [(t, 2.0), (t + timedelta(minutes=59), 4.0), (t + timedelta(hours=2), 7.0), (t, math.nan)]
    )
    assert got == {t: 3.0, t + timedelta(hours=2): 7.0}


def test_required_hours() -> None:
    """Test 75 % coverage in whole hours: 18 of 24, 18 of 23, 19 of 25."""
    assert [required_hours(n) for n in (24, 23, 25)] == [18, 18, 19]


@pytest.mark.parametrize(
    ("pollutant", "value", "level", "name"),
    [
        ("pm2_5", 0.0, 1, "good"),
        ("pm2_5", 5.0, 1, "good"),
        ("pm2_5", 5.01, 2, "fair"),
        ("pm2_5", 15.0, 2, "fair"),
        ("pm2_5", 50.0, 3, "moderate"),
        ("pm2_5", 90.0, 4, "poor"),
        ("pm2_5", 140.0, 5, "very poor"),
        ("pm2_5", 140.1, 6, "extremely poor"),
        ("pm10", 15.0, 1, "good"),
        ("pm10", 45.0, 2, "fair"),
        ("pm10", 120.0, 3, "moderate"),
        ("pm10", 195.0, 4, "poor"),
        ("pm10", 270.0, 5, "very poor"),
        ("pm10", 800.0, 6, "extremely poor"),
    ],
)
def test_eaqi_bands(pollutant: str, value: float, level: int, name: str) -> None:
    """Test the EEA index bands (2024 revision) at and around each boundary."""
    band = eaqi_band(pollutant, value)  # type: ignore[arg-type]
    assert (band.level, band.name) == (level, name)
    assert band.version == EAQI_VERSION and "2024" in band.version


@given(st.floats(min_value=0, max_value=2000), st.floats(min_value=0, max_value=2000))
def test_eaqi_is_monotonic(a: float, b: float) -> None:
    """Test that a higher concentration never gets a better band."""
    for pollutant in ("pm2_5", "pm10"):
        lo, hi = sorted((a, b))
        assert eaqi_band(pollutant, lo).level <= eaqi_band(pollutant, hi).level  # type: ignore[arg-type]


def test_bad_input_says_what_to_do() -> None:
    """Test that unknown pollutants, negative values and naive times are refused with advice."""
    with pytest.raises(ValueError, match="use pm2_5 or pm10"):
        eaqi_band("no2", 3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite value >= 0"):
        eaqi_band("pm10", -1.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        hourly_means([(datetime(2024, 1, 1, 10), 1.0)])
    with pytest.raises(ValueError, match="use pm2_5 or pm10"):
        daily_means({}, "pm1_0", CPH)  # type: ignore[arg-type]


def test_freshness() -> None:
    """Test stale and fresh sensors, no data at all, and a reading from a clock ahead of ours."""
    now = datetime(2024, 6, 11, 12, tzinfo=UTC)
    fresh = freshness(now - timedelta(minutes=10), now, timedelta(minutes=30))
    assert (fresh.stale, fresh.age) == (False, timedelta(minutes=10))
    assert freshness((now - timedelta(hours=2)).timestamp(), now, timedelta(minutes=30)).stale
    assert freshness(None, now, timedelta(minutes=30)) == freshness(None, now, timedelta(hours=1))
    assert freshness(None, now, timedelta(minutes=30)).stale
    ahead = freshness(now + timedelta(minutes=2), now, timedelta(minutes=30))
    assert ahead.age == timedelta(0) and not ahead.stale


def test_humidity_caveat() -> None:
    """Test that the caveat shows only when some hour is above 85 %RH."""
    assert humidity_caveat([60.0, 86.0])
    assert not humidity_caveat([60.0, 85.0, math.nan])
    assert not humidity_caveat([])
