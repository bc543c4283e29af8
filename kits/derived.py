"""Derived quantities: what a person reads, computed on read from what a sensor measured.

A deployment holds a list of :data:`Derivation` definitions (versioned with it on the server).
They are applied whenever readings are read (``gateway.store.derived.DerivedReader``); the
readings in the store stay exactly what the sensor sent, so a corrected depth or clamp ratio
recomputes the whole history.

- ``fill_level`` (%): a bin's fill level from the distance down to its contents and the depth
  of the empty bin (``depth_mm``, measured once from the sensor to the bottom).
- ``clamp``: a current clamp on an ADS1x15 channel: ``current_aN`` (A) = the channel's RMS volts
  times the clamp's ``ratio_a_per_v`` (an SCT-013-030 gives 1 V at 30 A: 30), ``power_aN`` (kW) =
  current times ``mains_v`` times ``power_factor`` (1 unless measured: apparent power).
- ``counts``: ``passes_per_hour`` and ``passes_per_day``, the *sums* of ``passes`` per clock hour
  and UTC day (counts add up; a mean of counts per window is wrong).
- ``dew_point`` (°C): from temperature and relative humidity of one sensor at one time (Magnus
  formula, Alduchov & Eskridge 1996 coefficients over water), where mould risk is the question.

A derived value whose inputs are missing (no humidity at that time, no depth set) is simply not
there: the raw readings are always shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kits.quantities import DERIVED_QUANTITIES

__all__ = [
    "INPUTS_OF_KIND",
    "KINDS",
    "OUTPUTS_OF_KIND",
    "Clamp",
    "Counts",
    "Derivation",
    "DerivedSet",
    "DewPoint",
    "FillLevel",
    "Kind",
    "Rule",
    "applies",
    "clamp_current",
    "clamp_power",
    "dew_point",
    "expand",
    "fill_level",
    "inputs_of",
    "known_outputs",
    "outputs_of",
    "parse",
]

Kind = Literal["fill_level", "clamp", "counts", "dew_point"]
KINDS: tuple[Kind, ...] = ("fill_level", "clamp", "counts", "dew_point")
Channel = Literal["a0", "a1", "a2", "a3"]
OUTPUTS_OF_KIND: dict[str, tuple[str, ...]] = {
    "fill_level": ("fill_level",),
    "clamp": tuple(f"{q}_a{i}" for q in ("current", "power") for i in range(4)),
    "counts": ("passes_per_hour", "passes_per_day"),
    "dew_point": ("dew_point",),
}

# Magnus coefficients over water (Alduchov & Eskridge 1996): within 0.35 °C from -40 to 50 °C.
MAGNUS_A = 17.625
MAGNUS_B = 243.04

# A headline may name every channel's current or power at once.
FAMILIES: dict[str, tuple[str, ...]] = {
    "current": tuple(f"current_a{i}" for i in range(4)),
    "power": tuple(f"power_a{i}" for i in range(4)),
}


def expand(name: str) -> tuple[str, ...]:
    """The quantities a headline name stands for: ``power`` is every channel's, others themselves."""
    return FAMILIES.get(name, (name,))


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str | None = Field(default=None, max_length=64, description="only this device; default: all")
    sensor: str | None = Field(default=None, max_length=32, description="only this sensor; default: all")


def _positive(kind: str, name: str, value: float | None, what: str, example: str) -> None:
    if value is None:
        raise ValueError(f"{kind}: {name} is missing: set it to {what} ({name}: {example})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{kind}: {name} is {value:g}, but it must be more than 0: set it to {what} ({name}: {example})"
        )


class FillLevel(_Rule):
    """Fill level (%) of a bin from the distance a sensor under its lid measures."""

    kind: Literal["fill_level"] = "fill_level"
    depth_mm: float | None = Field(
        default=None, description="distance from the sensor to the bottom of the empty bin, mm"
    )

    @model_validator(mode="after")
    def _check(self) -> FillLevel:
        _positive(
            "fill_level",
            "depth_mm",
            self.depth_mm,
            "the empty bin's depth, measured from the sensor to the bottom in mm",
            "1000",
        )
        return self


class Clamp(_Rule):
    """Current (A) and power (kW) of a current clamp read by an ADS1x15 channel (RMS volts)."""

    kind: Literal["clamp"] = "clamp"
    channel: Channel | None = Field(default=None, description="the ADS1x15 input: a0 to a3")
    ratio_a_per_v: float | None = Field(default=None, description="amperes per volt of the clamp's output")
    mains_v: float | None = Field(default=None, description="mains voltage (RMS), e.g. 230")
    power_factor: float = Field(default=1.0, description="1: apparent power (kVA); a measured factor: kW")

    @model_validator(mode="after")
    def _check(self) -> Clamp:
        if self.channel is None:
            raise ValueError(
                "clamp: channel is missing: name the ADS1x15 input the clamp is wired to (channel: a0)"
            )
        _positive(
            "clamp",
            "ratio_a_per_v",
            self.ratio_a_per_v,
            "the clamp's amperes per volt of output (an SCT-013-030 gives 1 V at 30 A)",
            "30",
        )
        _positive("clamp", "mains_v", self.mains_v, "the mains voltage of the circuit (RMS)", "230")
        if not (0 < self.power_factor <= 1):
            raise ValueError(
                f"clamp: power_factor is {self.power_factor:g}, but it must be more than 0 and at most 1: "
                "leave it out (1, apparent power) or set the factor you measured (power_factor: 0.9)"
            )
        return self


class Counts(_Rule):
    """``passes`` summed per hour and per day."""

    kind: Literal["counts"] = "counts"


class DewPoint(_Rule):
    """Dew point (°C) from temperature and relative humidity of one sensor."""

    kind: Literal["dew_point"] = "dew_point"


Rule = FillLevel | Clamp | Counts | DewPoint
Derivation = Annotated[Rule, Field(discriminator="kind")]
# What each kind reads (a clamp: the channel it is set to, so any of them).
INPUTS_OF_KIND: dict[str, tuple[str, ...]] = {
    "fill_level": ("distance",),
    "clamp": tuple(f"voltage_a{i}" for i in range(4)),
    "counts": ("passes",),
    "dew_point": ("temperature", "humidity"),
}


class DerivedSet(BaseModel):
    """A deployment's derivations (one version of them)."""

    model_config = ConfigDict(extra="forbid")

    derivations: list[Derivation] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _unique(self) -> DerivedSet:
        seen: set[tuple[str, str | None, str | None, str | None]] = set()
        for rule in self.derivations:
            key = (rule.kind, rule.device, rule.sensor, getattr(rule, "channel", None))
            if key in seen:
                where = f" on channel {key[3]}" if key[3] else ""
                raise ValueError(
                    f"{rule.kind}{where} is defined twice for the same device and sensor: keep one, "
                    "or name the device (device: ...) or sensor (sensor: ...) each one is for"
                )
            seen.add(key)
        return self


def outputs_of(rule: Rule) -> tuple[str, ...]:
    """The derived quantities ``rule`` makes."""
    if isinstance(rule, FillLevel):
        return ("fill_level",)
    if isinstance(rule, Clamp):
        return (f"current_{rule.channel}", f"power_{rule.channel}")
    if isinstance(rule, Counts):
        return ("passes_per_hour", "passes_per_day")
    return ("dew_point",)


def inputs_of(rule: Rule) -> tuple[str, ...]:
    """The measured quantities ``rule`` reads."""
    if isinstance(rule, FillLevel):
        return ("distance",)
    if isinstance(rule, Clamp):
        return (f"voltage_{rule.channel}",)
    if isinstance(rule, Counts):
        return ("passes",)
    return ("temperature", "humidity")


def applies(rule: Rule, device: str, sensor: str) -> bool:
    """Whether ``rule`` is for ``device``'s ``sensor``."""
    return (rule.device is None or rule.device == device) and (rule.sensor is None or rule.sensor == sensor)


def fill_level(distance_mm: float, depth_mm: float) -> float:
    """Return how full a bin is (0-100 %): 0 at ``depth_mm`` (the bottom), 100 at the sensor.

    A distance beyond the depth (a reflection past the bottom) is 0 %, never negative.
    """
    return min(100.0, max(0.0, 100.0 * (depth_mm - distance_mm) / depth_mm))


def clamp_current(volts_rms: float, ratio_a_per_v: float) -> float:
    """Return a clamp's current (A) from its output's RMS volts."""
    return volts_rms * ratio_a_per_v


def clamp_power(current_a: float, mains_v: float, power_factor: float = 1.0) -> float:
    """Return the power (kW) of ``current_a`` at ``mains_v`` with ``power_factor``."""
    return current_a * mains_v * power_factor / 1000.0


def dew_point(temperature_c: float, humidity_rh: float) -> float | None:
    """Return the dew point (°C) of air at ``temperature_c`` and ``humidity_rh`` %, or None when the
    humidity is not in (0, 100] (no dew point exists) or the temperature is beyond the formula."""
    if not (0 < humidity_rh <= 100) or not (-60 <= temperature_c <= 80):
        return None
    gamma = math.log(humidity_rh / 100.0) + MAGNUS_A * temperature_c / (MAGNUS_B + temperature_c)
    return MAGNUS_B * gamma / (MAGNUS_A - gamma)


def known_outputs(rules: Iterable[Rule]) -> list[str]:
    """The derived quantities ``rules`` make, in the registry's order."""
    made = {q for r in rules for q in outputs_of(r)}
    return [q for q in DERIVED_QUANTITIES if q in made]


def parse(data: object) -> list[Rule]:
    """Return the derivations of stored JSON (``{"derivations": [...]}`` or a bare list)."""
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        data = {"derivations": list(data)}
    return list(DerivedSet.model_validate(data).derivations)
