"""The registry of quantities and their SenML units (docs/architecture.md, the table under "The wire").

Add a quantity here, one line, before a driver emits it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DERIVED_QUANTITIES", "QUANTITIES", "SECONDARY_UNITS", "Quantity", "quantity", "spec"]

# RFC 8798 secondary units: a pack using one declares bver with RFC 9100 feature 4 (bver 26).
SECONDARY_UNITS = frozenset({"hPa", "ppm", "ug/m3", "mm"})


@dataclass(frozen=True, slots=True)
class Quantity:
    """A measured quantity: its SenML unit (None when dimensionless) and its physical range.

    Values outside ``low``..``high`` cannot be real and are never published as data.
    """

    name: str
    unit: str | None
    low: float
    high: float
    label: str
    summed: bool = False  # a count of events: a window's value is the sum of its readings, never the mean


def _q(
    name: str, unit: str | None, low: float, high: float, label: str, *, summed: bool = False
) -> tuple[str, Quantity]:
    return name, Quantity(name, unit, low, high, label, summed)


QUANTITIES: dict[str, Quantity] = dict(
    [
        _q("temperature", "Cel", -60.0, 125.0, "Temperature"),
        _q("humidity", "%RH", 0.0, 100.0, "Relative humidity"),
        _q("pressure", "hPa", 300.0, 1100.0, "Air pressure"),
        _q("co2", "ppm", 0.0, 40000.0, "CO2"),
        _q("voc_index", None, 0.0, 500.0, "VOC index"),
        _q("pm1_0", "ug/m3", 0.0, 1000.0, "PM1.0"),
        _q("pm2_5", "ug/m3", 0.0, 1000.0, "PM2.5"),
        _q("pm10", "ug/m3", 0.0, 1000.0, "PM10"),
        _q("particles_03um", "count", 0.0, 65535.0, "Particles > 0.3 µm per 0.1 L"),
        _q("particles_05um", "count", 0.0, 65535.0, "Particles > 0.5 µm per 0.1 L"),
        _q("particles_10um", "count", 0.0, 65535.0, "Particles > 1.0 µm per 0.1 L"),
        _q("particles_25um", "count", 0.0, 65535.0, "Particles > 2.5 µm per 0.1 L"),
        _q("particles_50um", "count", 0.0, 65535.0, "Particles > 5.0 µm per 0.1 L"),
        _q("particles_100um", "count", 0.0, 65535.0, "Particles > 10 µm per 0.1 L"),
        _q("illuminance", "lx", 0.0, 150000.0, "Illuminance"),
        _q("distance", "mm", 0.0, 4000.0, "Distance"),
        _q("acceleration_x", "m/s2", -160.0, 160.0, "Acceleration X"),
        _q("acceleration_y", "m/s2", -160.0, 160.0, "Acceleration Y"),
        _q("acceleration_z", "m/s2", -160.0, 160.0, "Acceleration Z"),
        _q("vibration_rms", "m/s2", 0.0, 160.0, "Vibration RMS"),
        _q("voltage_a0", "V", -6.2, 6.2, "Voltage A0"),
        _q("voltage_a1", "V", -6.2, 6.2, "Voltage A1"),
        _q("voltage_a2", "V", -6.2, 6.2, "Voltage A2"),
        _q("voltage_a3", "V", -6.2, 6.2, "Voltage A3"),
        _q("passes", "count", 0.0, 100000.0, "Passes", summed=True),
        # a capacitive probe's raw count (about 200 dry to 2000 wet); a calibration turns it into %
        _q("soil_moisture", None, 0.0, 4095.0, "Soil moisture"),
    ]
)


# Computed on read from the readings above and a deployment's definitions (kits/derived.py), never
# sent on the wire nor stored: a reading keeps what the sensor measured.
DERIVED_QUANTITIES: dict[str, Quantity] = dict(
    [
        _q("fill_level", "%", 0.0, 100.0, "Fill level"),
        *(_q(f"current_a{i}", "A", 0.0, 10000.0, f"Current A{i}") for i in range(4)),
        *(_q(f"power_a{i}", "kW", 0.0, 10000.0, f"Power A{i}") for i in range(4)),
        _q("passes_per_hour", "count", 0.0, 1e9, "Passes per hour", summed=True),
        _q("passes_per_day", "count", 0.0, 1e9, "Passes per day", summed=True),
        _q("dew_point", "Cel", -100.0, 125.0, "Dew point"),
    ]
)


def spec(name: str) -> Quantity | None:
    """Return the measured or derived quantity called ``name``, or None when there is none."""
    return QUANTITIES.get(name) or DERIVED_QUANTITIES.get(name)


def quantity(name: str) -> Quantity:
    """Return the registered quantity called ``name``.

    Raises:
        KeyError: ``name`` is not in the registry.
    """
    return QUANTITIES[name]
