"""Fixtures of the edge tests: emulated buses stand in for Raspberry Pi I2C hardware."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest

from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.emulator import Bme280Emulator

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


class _NoSleepTime:
    """The ``time`` module as the Adafruit drivers see it, without their conversion waits.

    On an emulated bus a conversion completes at once; the waits would only slow the tests.
    """

    monotonic = staticmethod(time.monotonic)
    monotonic_ns = staticmethod(time.monotonic_ns)
    perf_counter = staticmethod(time.perf_counter)
    time = staticmethod(time.time)

    @staticmethod
    def sleep(seconds: float) -> None:
        return None


@pytest.fixture(autouse=True)
def fast_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the Adafruit drivers' sleeps (real drivers, emulated chips that answer at once)."""
    import adafruit_ads1x15.ads1x15
    import adafruit_lis3dh
    import adafruit_pm25.i2c
    import adafruit_scd4x
    import adafruit_sgp40
    import adafruit_sht4x
    import adafruit_veml7700
    import adafruit_vl53l1x

    for module in (
        adafruit_ads1x15.ads1x15,
        adafruit_lis3dh,
        adafruit_pm25.i2c,
        adafruit_scd4x,
        adafruit_sht4x,
        adafruit_veml7700,
        adafruit_vl53l1x,
    ):
        monkeypatch.setattr(module, "time", _NoSleepTime)
    monkeypatch.setattr(adafruit_sgp40, "sleep", _NoSleepTime.sleep)
