"""Tests of edge/emulated/scenarios.py: deterministic, plausible environments."""

from __future__ import annotations

import pytest

from edge.emulated.scenarios import SCENARIOS, get_scenario
from kits.errors import ConfigError
from kits.quantities import QUANTITIES
from tests.edge.conftest import WEDNESDAY_10H

HOUR = 3600.0


def test_office_day_is_deterministic_given_its_seed() -> None:
    """Test that equal seeds give equal values at equal times, in any order of asking."""
    first, second = get_scenario("office-day", seed=7), get_scenario("office-day", seed=7)
    times = [WEDNESDAY_10H + k * 97.0 for k in range(50)]
    forward = [first(t) for t in times]
    backward = [second(t) for t in reversed(times)][::-1]
    assert forward == backward
    assert first(WEDNESDAY_10H) == first(WEDNESDAY_10H)


def test_different_seeds_give_different_noise() -> None:
    """Test that the seed changes the values."""
    a = get_scenario("office-day", seed=1)(WEDNESDAY_10H + 33.0)
    b = get_scenario("office-day", seed=2)(WEDNESDAY_10H + 33.0)
    assert a != b


def test_office_day_follows_a_working_day() -> None:
    """Test that an afternoon at work is warmer and more humid than the night before it."""
    day = get_scenario("office-day", seed=0)
    night = day(WEDNESDAY_10H - 7 * HOUR)  # 03:00
    afternoon = day(WEDNESDAY_10H + 5 * HOUR)  # 15:00
    saturday = day(WEDNESDAY_10H + 3 * 24 * HOUR + 5 * HOUR)
    assert afternoon["temperature"] - night["temperature"] > 3.0
    assert afternoon["humidity"] > night["humidity"]
    assert saturday["temperature"] < afternoon["temperature"] - 3.0


def test_office_day_stays_plausible_over_a_week() -> None:
    """Test that a week of values stays indoor-plausible and inside the physical ranges."""
    day = get_scenario("office-day", seed=3)
    for k in range(7 * 24 * 4):
        values = day(WEDNESDAY_10H + k * 900.0)
        assert 16.0 < values["temperature"] < 25.0
        assert 25.0 < values["humidity"] < 60.0
        assert 995.0 < values["pressure"] < 1031.0
        for qty, value in values.items():
            assert QUANTITIES[qty].low <= value <= QUANTITIES[qty].high


def test_office_day_changes_smoothly() -> None:
    """Test that one second apart the noise does not jump."""
    day = get_scenario("office-day", seed=5)
    for k in range(200):
        a, b = day(WEDNESDAY_10H + k * 13.0), day(WEDNESDAY_10H + k * 13.0 + 1.0)
        assert abs(a["temperature"] - b["temperature"]) < 0.02
        assert abs(a["humidity"] - b["humidity"]) < 0.1


def test_an_unknown_scenario_lists_the_known_ones() -> None:
    """Test that a misspelt scenario name fails with the names that exist."""
    with pytest.raises(ConfigError) as caught:
        get_scenario("ofice-day", seed=0)
    for name in SCENARIOS:
        assert name in str(caught.value)
