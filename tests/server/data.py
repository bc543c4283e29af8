"""Test data of the server tests."""

from __future__ import annotations

from kits.wire import Record

__all__ = ["NOW", "climate"]

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z, the fixed clock of the app under test


def climate(device: str, time: float, temperature: float = 21.5, org: str = "aarhus") -> list[Record]:
    """Return a BME280 reading of temperature, humidity and pressure of ``device`` at ``time``."""
    return [
        Record(org, device, "bme280", "temperature", temperature, time),
        Record(org, device, "bme280", "humidity", 45.25, time),
        Record(org, device, "bme280", "pressure", 1013.5, time),
    ]
