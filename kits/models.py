"""Pydantic models of the shared contract: kit profiles, use-cases, device config, status/meta.

Everything read from a file or the network is validated by one of these (``extra="forbid"``:
a misspelt key is an error, never silently ignored).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kits.quantities import QUANTITIES

__all__ = [
    "Calibration",
    "DeviceConfig",
    "DeviceSensor",
    "KitProfile",
    "KitSensor",
    "MqttSettings",
    "OutboxSettings",
    "SensorFilter",
    "Slug",
    "Theme",
    "Threshold",
    "UseCase",
]

Slug = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
SensorName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$")]
I2CAddress = Annotated[int, Field(ge=0x03, le=0x77)]
DashboardTemplate = Literal["indoor-climate", "air-quality", "bin-fill", "counting", "energy", "vibration"]
Theme = Literal[
    "buildings",
    "air",
    "waste",
    "mobility",
    "nature",
    "energy",
    "water",
    "food",
    "infrastructure",
    "housing",
    "port",
    "lighting",
    "citizen-science",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_quantities(quantities: list[str]) -> list[str]:
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise ValueError(
            f"unknown quantities {unknown}: use names from kits/quantities.py "
            f"({', '.join(sorted(QUANTITIES))})"
        )
    return quantities


class KitSensor(_Model):
    """A sensor in a kit profile: which part, at which I2C address, measuring what."""

    part: str = Field(description="driver name in edge/drivers, e.g. bme280")
    address: I2CAddress
    name: SensorName | None = Field(default=None, description="defaults to the part name")
    quantities: list[str]
    label: str = ""

    @field_validator("quantities")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _check_quantities(value)

    @property
    def sensor_name(self) -> str:
        return self.name or self.part


class KitPart(_Model):
    """A line of the kit's bill of materials."""

    item: str
    quantity: int = Field(ge=1)
    part_number: str = ""
    price_eur: float | None = Field(default=None, ge=0)
    where_to_buy: str = ""


class KitProfile(_Model):
    """A kind of suitcase: its Raspberry Pis and, per Pi, the sensors on its I2C bus."""

    id: Slug
    name: str
    description: str
    pis: int = Field(ge=1, description="Raspberry Pis in the suitcase")
    sensors: list[KitSensor] = Field(min_length=1, description="sensors on each Pi")
    bill_of_materials: list[KitPart] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> KitProfile:
        names = [s.sensor_name for s in self.sensors]
        if len(set(names)) != len(names):
            raise ValueError(f"sensor names repeat in {names}: give each sensor a distinct name")
        addresses = [s.address for s in self.sensors]
        if len(set(addresses)) != len(addresses):
            raise ValueError(
                f"two sensors share an I2C address in {[hex(a) for a in addresses]}: "
                "move one with its address jumper or put it behind a TCA9548A multiplexer"
            )
        return self


class Threshold(_Model):
    """A line drawn on a chart: a guideline value of a quantity, with its source."""

    quantity: str
    value: float
    label: str
    source: str = ""

    @field_validator("quantity")
    @classmethod
    def _known(cls, value: str) -> str:
        return _check_quantities([value])[0]


class UseCase(_Model):
    """A use-case in the catalogue, drawn from the cities' experience (cites the seed report)."""

    id: Slug
    title: str
    summary: str
    kit_profile: Slug
    sensors: list[str] = Field(min_length=1, description="parts recommended, by driver name")
    quantities: list[str] = Field(min_length=1)
    placement: list[str] = Field(min_length=1)
    best_practices: list[str] = Field(default_factory=list)
    dashboard: DashboardTemplate
    thresholds: list[Threshold] = Field(default_factory=list)
    seed_lines: list[str] = Field(
        min_length=1, description="line ranges of ../shared/seed/ this use-case draws on, e.g. 2698-2701"
    )
    themes: list[Theme] = Field(default_factory=list, description="for browsing the catalogue")
    problem: str = Field(default="", description="what goes wrong today that measuring helps with")
    who_asked: str = Field(default="", description="who in a municipality asks for this")
    sampling_interval_s: float | None = Field(default=None, gt=0, le=86400)
    privacy: list[str] = Field(default_factory=list, description="why no person is identified")
    pitfalls: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list, description="cities that did this, with source")
    sources: list[str] = Field(
        default_factory=list,
        description="named external sources (guidelines, published city projects) for what the seed "
        "report does not say",
    )

    @field_validator("quantities")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _check_quantities(value)


class MqttSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    keepalive: int = Field(default=30, ge=5, le=3600)


class SensorFilter(_Model):
    """A smoothing filter applied per quantity to a sensor's readings before calibration."""

    kind: Literal["median", "moving_average"]
    window: int = Field(default=5, ge=2, le=120, description="readings the filter spans")


class Calibration(_Model):
    """A calibration record of one sensor's quantity: published value = raw * scale + offset.

    The server owns these records and sends them with the ``config`` command; every change gets
    a new ``version``, reported by the agent in ``meta``, so values can be recomputed.
    """

    sensor: SensorName
    quantity: str
    offset: float = 0.0
    scale: float = Field(default=1.0, gt=0)
    version: int = Field(default=1, ge=0)
    date: str | None = Field(default=None, description="when the calibration was made, ISO 8601")

    @field_validator("quantity")
    @classmethod
    def _known(cls, value: str) -> str:
        return _check_quantities([value])[0]


class OutboxSettings(_Model):
    """The edge agent's store-and-forward outbox (docs/architecture.md, "Delivery guarantees" 1).

    ``sync``: ``full`` commits each cycle with fsync (no loss on power cut); ``normal`` commits
    each cycle without fsync (no loss on a crash or kill; on a power cut, the commits since the
    last WAL checkpoint can be lost); ``batched`` commits every ``batch_s`` seconds (saves the SD
    card; up to ``batch_s`` seconds of readings can be lost on a crash or power cut).
    """

    max_pending: int = Field(default=1_000_000, ge=100, description="oldest dropped (and counted) beyond")
    retention_days: float = Field(default=7.0, ge=0, le=365, description="sent readings kept for resend")
    sync: Literal["full", "normal", "batched"] = "full"
    batch_s: float = Field(default=30.0, gt=0, le=3600)
    drain_readings_per_s: float = Field(default=5000.0, gt=0, description="backlog rate after an outage")
    pack_records: int = Field(default=250, ge=1, le=1000, description="readings per backlog pack")


class DeviceSensor(_Model):
    """A sensor on a device's bus, as the agent should read it."""

    name: SensorName
    part: str
    address: I2CAddress
    interval_s: float = Field(default=10.0, gt=0, le=86400)
    options: dict[str, Any] = Field(default_factory=dict, description="driver options, see its module")
    filter: SensorFilter | None = None
    stuck_after: int = Field(
        default=60, ge=0, description="identical readings in a row that flag the sensor stuck; 0: never"
    )


class DeviceConfig(_Model):
    """What an edge agent needs to run: who it is, where the broker is, what to read."""

    device: Slug
    org: Slug
    kit_profile: Slug | None = None
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    sensors: list[DeviceSensor] = Field(min_length=1)
    bus: Literal["board", "emulated"] = "board"
    scenario: str = Field(default="office-day", description="emulated bus only")
    publish_interval_s: float = Field(default=10.0, gt=0, le=86400)
    calibration: list[Calibration] = Field(default_factory=list)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    @model_validator(mode="after")
    def _calibration_names_sensors(self) -> DeviceConfig:
        names = {s.name for s in self.sensors}
        for cal in self.calibration:
            if cal.sensor not in names:
                raise ValueError(
                    f"calibration of sensor {cal.sensor!r}, which is not in sensors "
                    f"({', '.join(sorted(names))}): fix the name or remove the record"
                )
        return self
