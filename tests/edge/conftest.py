"""Fixtures of the edge tests: emulated buses stand in for Raspberry Pi I2C hardware."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from edge.emulated.bme280 import Bme280Emulator
from edge.emulated.bus import EmulatedI2C

# 2026-03-04 (a Wednesday) 10:00 UTC: office hours, clock synced.
WEDNESDAY_10H = 1_772_618_400.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = WEDNESDAY_10H) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Targets(dict[str, float]):
    """Mutable targets an emulated chip reads at each conversion."""

    def __call__(self, now: float) -> Mapping[str, float]:
        return dict(self)


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def targets() -> Targets:
    return Targets(temperature=21.5, humidity=45.0, pressure=1009.0)


@pytest.fixture()
def bme280_bus(targets: Targets, clock: FakeClock) -> EmulatedI2C:
    """A bus with one emulated BME280 at 0x77 following ``targets``."""
    return EmulatedI2C({0x77: Bme280Emulator(targets, clock=clock)})
