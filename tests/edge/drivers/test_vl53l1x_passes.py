"""The VL53L1X counting people or bikes passing (``mode: passes``), through the real Adafruit driver."""

from __future__ import annotations

import pytest

from edge.drivers import ReadContext, Reading, load_driver
from edge.emulated import build_bus
from edge.emulated.scenarios import Footpath
from edge.parts.vl53l1x.driver import PassCounter
from kits.errors import ConfigError
from kits.models import DeviceSensor
from tests.edge.conftest import FakeClock

PASSES = {"mode": "passes", "baseline_mm": 1500, "threshold_mm": 300, "rate_hz": 20, "burst_s": 10}


def _driver(clock: FakeClock, options: dict[str, object], seed: int = 3) -> object:
    bus = build_bus(
        [DeviceSensor(name="path", part="vl53l1x", address=0x29)], "footpath", clock=clock, seed=seed
    )
    driver = load_driver("vl53l1x").create(bus, 0x29, options)
    if hasattr(driver, "sleep"):  # the burst paces the emulator's clock
        driver.sleep = clock.advance
        driver.monotonic = clock
    return driver


@pytest.mark.parametrize("seed", [3, 11])
def test_passes_counted_equal_the_footpath_scenario(clock: FakeClock, seed: int) -> None:
    """Test that each 10 s burst counts exactly the passes the scenario put in that window."""
    clock.now -= clock.now % 10.0  # a slot boundary: no pass in the beam
    driver = _driver(clock, PASSES, seed)
    scenario = Footpath(seed)
    counted: list[int] = []
    expected: list[int] = []
    for _ in range(12):
        start = clock.now
        reading = driver.read(ReadContext(time=clock.now))  # type: ignore[attr-defined]
        assert isinstance(reading, Reading)
        assert reading.values["distance"] == pytest.approx(1500.0, abs=5.0)
        counted.append(int(reading.values["passes"]))
        clock.advance(start + 10.0 - clock.now)
        expected.append(scenario.passes(start, start + 10.0))
    assert counted == expected
    assert sum(expected) >= 8  # the scenario really walks people past


def test_a_pass_spanning_two_reads_counts_once(clock: FakeClock) -> None:
    """Test that a pass still in the beam when a burst ends counts in the next read, not twice."""
    scenario = Footpath(3)
    slot = clock.now - clock.now % 10.0
    while not scenario._slot(round(slot / 10.0)):
        slot += 10.0
    begin = scenario._slot(round(slot / 10.0))[0][0]
    clock.now = begin - 0.5
    driver = _driver(clock, {**PASSES, "burst_s": 0.8})  # ends mid-pass
    first = driver.read(ReadContext(time=clock.now))  # type: ignore[attr-defined]
    second = driver.read(ReadContext(time=clock.now))  # type: ignore[attr-defined]
    assert isinstance(first, Reading) and isinstance(second, Reading)
    assert (first.values["passes"], second.values["passes"]) == (0.0, 1.0)


def test_hysteresis_ignores_jitter_at_the_threshold() -> None:
    """Test that a range wobbling around the threshold is one pass, not several."""
    counter = PassCounter(1500.0, 300.0, 100.0)
    ranges = [1500, 1190, 1210, 1195, 1250, 1180, 1290, 1500, None, 1500]
    assert sum(counter.feed(None if r is None else float(r)) for r in ranges) == 1


def test_distance_mode_is_unchanged(clock: FakeClock) -> None:
    """Test that without options the part still reads only the distance."""
    driver = _driver(clock, {})
    reading = driver.read(ReadContext(time=clock.now))  # type: ignore[attr-defined]
    assert isinstance(reading, Reading) and set(reading.values) == {"distance"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "passes"}, "needs baseline_mm"),
        ({"baseline_mm": 1500}, "need mode: passes"),
        ({"mode": "passes", "baseline_mm": 1500, "threshold_mm": 2000}, "threshold_mm"),
        ({"mode": "passes", "baseline_mm": 1500, "rate_hz": 100}, "1 to 50 Hz"),
        ({"mode": "count"}, "'distance' or 'passes'"),
    ],
)
def test_bad_passes_options_are_config_errors(
    clock: FakeClock, options: dict[str, object], message: str
) -> None:
    """Test that each bad option combination names what to correct."""
    with pytest.raises(ConfigError, match=message):
        _driver(clock, options)
