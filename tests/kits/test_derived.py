"""Tests of the derived quantities' definitions and formulas (kits/derived.py)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from kits.catalog import load_catalog
from kits.derived import (
    Clamp,
    DerivedSet,
    FillLevel,
    clamp_current,
    clamp_power,
    dew_point,
    fill_level,
    parse,
)
from kits.models import UseCase


def test_fill_level_is_empty_at_the_depth_and_full_at_the_sensor() -> None:
    """Test that a 1 m bin reads 0 % at 1000 mm, 80 % at 200 mm, 100 % at 0, and never leaves 0-100."""
    assert fill_level(1000, 1000) == 0.0
    assert fill_level(200, 1000) == pytest.approx(80.0)
    assert fill_level(0, 1000) == 100.0
    assert fill_level(1300, 1000) == 0.0  # a reflection past the bottom is empty, not -30 %


def test_clamp_gives_amperes_and_kilowatts() -> None:
    """Test that 0.5 V of an SCT-013-030 (30 A/V) is 15 A, and 15 A at 230 V is 3.45 kW (pf 1)."""
    assert clamp_current(0.5, 30) == pytest.approx(15.0)
    assert clamp_power(15.0, 230) == pytest.approx(3.45)
    assert clamp_power(15.0, 230, 0.8) == pytest.approx(2.76)


def test_dew_point_matches_reference_values() -> None:
    """Test the Magnus dew point against published values (20 °C/50 % -> 9.3 °C; 100 % -> the
    temperature itself), and that impossible humidities give none."""
    assert dew_point(20.0, 50.0) == pytest.approx(9.26, abs=0.05)
    assert dew_point(10.0, 100.0) == pytest.approx(10.0, abs=1e-9)
    assert dew_point(25.0, 80.0) == pytest.approx(21.3, abs=0.1)
    assert dew_point(20.0, 0.0) is None
    assert dew_point(20.0, -3.0) is None
    assert dew_point(20.0, 101.0) is None
    assert math.isfinite(dew_point(-20.0, 30.0) or math.nan)


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"kind": "fill_level"}, ["fill_level", "depth_mm is missing", "depth_mm: 1000"]),
        ({"kind": "fill_level", "depth_mm": 0}, ["depth_mm is 0", "more than 0"]),
        ({"kind": "fill_level", "depth_mm": -400}, ["depth_mm is -400", "more than 0"]),
        ({"kind": "clamp", "ratio_a_per_v": 30, "mains_v": 230}, ["channel is missing", "channel: a0"]),
        ({"kind": "clamp", "channel": "a1", "mains_v": 230}, ["ratio_a_per_v is missing", "SCT-013-030"]),
        ({"kind": "clamp", "channel": "a1", "ratio_a_per_v": 0, "mains_v": 230}, ["ratio_a_per_v is 0"]),
        ({"kind": "clamp", "channel": "a1", "ratio_a_per_v": -30, "mains_v": 230}, ["ratio_a_per_v is -30"]),
        ({"kind": "clamp", "channel": "a1", "ratio_a_per_v": 30}, ["mains_v is missing", "mains_v: 230"]),
        ({"kind": "clamp", "channel": "a1", "ratio_a_per_v": 30, "mains_v": 0}, ["mains_v is 0"]),
        ({"kind": "clamp", "channel": "a1", "ratio_a_per_v": 30, "mains_v": -230}, ["mains_v is -230"]),
        (
            {"kind": "clamp", "channel": "a1", "ratio_a_per_v": 30, "mains_v": 230, "power_factor": 0},
            ["power_factor is 0", "at most 1"],
        ),
        ({"kind": "clamp", "channel": "a9", "ratio_a_per_v": 30, "mains_v": 230}, ["a0", "a3"]),
        ({"kind": "fill_level", "depth_mm": 900, "depht": 3}, ["depht", "not permitted"]),
        ({"kind": "rainbow"}, ["rainbow", "fill_level"]),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(rule: dict[str, object], words: list[str]) -> None:
    """Test that a depth, ratio or voltage that is missing, zero or negative (and a misspelt key or
    unknown kind) is refused, the message naming the parameter, the problem and what to set."""
    with pytest.raises(ValidationError) as caught:
        DerivedSet.model_validate({"derivations": [rule]})
    text = str(caught.value)
    for word in words:
        assert word in text


def test_a_rule_twice_for_the_same_place_is_refused() -> None:
    """Test that two fill levels for the same device and sensor are refused, while one per device is fine."""
    with pytest.raises(ValidationError, match="defined twice"):
        parse([{"kind": "fill_level", "depth_mm": 900}, {"kind": "fill_level", "depth_mm": 1000}])
    rules = parse(
        [
            {"kind": "fill_level", "depth_mm": 900, "device": "bin-1"},
            {"kind": "fill_level", "depth_mm": 1100, "device": "bin-2"},
            {"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30, "mains_v": 230},
            {"kind": "clamp", "channel": "a1", "ratio_a_per_v": 100, "mains_v": 230},
        ]
    )
    assert [type(r) for r in rules] == [FillLevel, FillLevel, Clamp, Clamp]


def test_the_catalogue_names_what_people_read() -> None:
    """Test that the bin, energy, counting and damp use-cases read fill level, power and current,
    counts per hour and day, and dew point first, and derive them."""
    cases = load_catalog().use_cases
    assert cases["waste-bin-fill"].headline == ["fill_level"]
    assert "fill_level" in cases["waste-bin-fill"].derived
    assert cases["energy-metering"].headline == ["power", "current"]
    assert cases["energy-metering"].derived == ["clamp"]
    for counting in ("cyclist-counting", "park-visitor-counting"):
        assert cases[counting].headline == ["passes_per_hour", "passes_per_day"]
    assert cases["housing-damp-mould"].headline[0] == "dew_point"


def test_a_headline_nothing_derives_is_refused() -> None:
    """Test that a use-case naming a derived quantity as headline without the kind making it is refused."""
    base = load_catalog().use_cases["waste-bin-fill"].model_dump()
    with pytest.raises(ValidationError, match="derived does not make it"):
        UseCase.model_validate({**base, "derived": []})
    with pytest.raises(ValidationError, match="unknown quantities"):
        UseCase.model_validate({**base, "headline": ["fullness"]})
