"""Pydantic models of the shared contract: kit profiles, use-cases, device config, status/meta.

Everything read from a file or the network is validated by one of these (``extra="forbid"``:
a misspelt key is an error, never silently ignored).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

from kits.derived import KINDS, OUTPUTS_OF_KIND, Kind, expand
from kits.quantities import DERIVED_QUANTITIES, QUANTITIES

__all__ = [
    "Calibration",
    "DeviceConfig",
    "DeviceSensor",
    "KitProfile",
    "KitSensor",
    "MqttSettings",
    "MuxPort",
    "OutboxSettings",
    "SensorFilter",
    "Slug",
    "Theme",
    "Threshold",
    "UseCase",
    "check_paths",
]

Slug = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
SensorName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$")]
I2CAddress = Annotated[int, Field(ge=0x03, le=0x77)]
MUX_ADDRESSES = range(0x70, 0x78)  # a TCA9548A's A0-A2 pins set 0x70 to 0x77
MUX_CHANNELS = range(8)
_PATH_PATTERN = r"^0x7[0-7]/[0-7]/0x[0-7][0-9a-fA-F]$"
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


class MuxPort(_Model):
    """A channel of a TCA9548A I2C multiplexer: the multiplexer's address and the channel (0-7)."""

    address: int = Field(ge=MUX_ADDRESSES.start, le=MUX_ADDRESSES.stop - 1)
    channel: int = Field(ge=MUX_CHANNELS.start, le=MUX_CHANNELS.stop - 1)

    def __str__(self) -> str:
        return f"{self.address:#04x}/{self.channel}"


def _parse_path(data: Any) -> Any:
    """Split ``address: "0x70/3/0x77"`` (multiplexer, channel, part) into ``mux`` and ``address``."""
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        return data
    text = data["address"].strip()
    pieces = text.split("/")
    if len(pieces) == 1:
        return {**data, "address": _int(text)}
    if len(pieces) != 3:
        raise ValueError(
            f"address {text!r} is not a bus path: write the part's address (0x77), or behind a "
            "TCA9548A multiplexer its address, the channel and the part's address (0x70/3/0x77)"
        )
    if data.get("mux") is not None:
        raise ValueError(f"address {text!r} is a path and mux is given too: keep one of the two")
    mux, channel, address = _int(pieces[0]), _int(pieces[1]), _int(pieces[2])
    if mux not in MUX_ADDRESSES:
        raise ValueError(
            f"address {text!r}: {pieces[0]} is not a TCA9548A address: a multiplexer is at 0x70 to 0x77 "
            "(0x70 unless its A0-A2 pins are set)"
        )
    if channel not in MUX_CHANNELS:
        raise ValueError(
            f"address {text!r}: a TCA9548A has channels 0 to 7, not {pieces[1]}: fix the channel"
        )
    return {**data, "address": address, "mux": {"address": mux, "channel": channel}}


def _int(text: str) -> int | str:
    try:
        return int(text.strip(), 0)
    except ValueError:
        return text  # left for the field's own check, which names it


class _OnTheBus(_Model):
    """A sensor's place on the bus: its address, behind a multiplexer channel or not.

    In files and messages the place is one ``address``: ``0x77`` on the Pi's bus, or the path
    ``"0x70/3/0x77"`` behind channel 3 of the TCA9548A at 0x70.
    """

    address: Annotated[
        int,
        Field(ge=0x03, le=0x77),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0x03, "maximum": 0x77},
                    {"type": "string", "pattern": _PATH_PATTERN},
                ],
                "description": "the I2C address, or behind a multiplexer its path, e.g. 0x70/3/0x77",
            }
        ),
    ]
    mux: MuxPort | None = Field(
        default=None, exclude=True, description="the multiplexer channel, when behind one (from the path)"
    )

    @model_validator(mode="before")
    @classmethod
    def _path(cls, data: Any) -> Any:
        return _parse_path(data)

    @model_validator(mode="after")
    def _not_the_mux(self) -> _OnTheBus:
        if self.mux is not None and self.address == self.mux.address:
            raise ValueError(
                f"address {self.path}: the part cannot have its multiplexer's address: fix the part's address"
            )
        return self

    @field_serializer("address")
    def _address_or_path(self, address: int) -> int | str:
        return self.path if self.mux is not None else address

    @property
    def path(self) -> str:
        """``0x77``, or ``0x70/3/0x77`` behind channel 3 of the multiplexer at 0x70."""
        return f"{self.mux}/{self.address:#04x}" if self.mux is not None else f"{self.address:#04x}"


def check_paths(sensors: list[tuple[str, _OnTheBus]]) -> None:
    """Refuse two sensors at one place on the bus, or one that a multiplexer's channel shadows.

    Raises:
        ValueError: two sensors claim the same path; a sensor on the Pi's bus has the address of a
            sensor behind a multiplexer (they answer together when its channel is open) or of a
            multiplexer in use.
    """
    seen: dict[str, str] = {}
    direct = {s.address: name for name, s in sensors if s.mux is None}
    muxes = {s.mux.address for _, s in sensors if s.mux is not None}
    for name, sensor in sensors:
        if sensor.path in seen:
            where = (
                f"on another channel of the multiplexer ({sensor.mux.address:#04x}/0 to 7)"
                if sensor.mux is not None
                else f"behind a TCA9548A multiplexer, each on its own channel (0x70/0/{sensor.address:#04x}, "
                f"0x70/1/{sensor.address:#04x})"
            )
            raise ValueError(
                f"sensors {seen[sensor.path]!r} and {name!r} both claim {sensor.path}: move one with its "
                f"address jumper, or put it {where}"
            )
        seen[sensor.path] = name
        if sensor.mux is not None and sensor.address in direct:
            raise ValueError(
                f"sensor {direct[sensor.address]!r} at {sensor.address:#04x} on the Pi's bus and sensor "
                f"{name!r} at {sensor.path} answer together whenever channel {sensor.mux.channel} is open: "
                "put both behind the multiplexer, on different channels"
            )
        if sensor.mux is None and sensor.address in muxes:
            raise ValueError(
                f"sensor {name!r} at {sensor.address:#04x} has the address of a multiplexer in use: "
                "set the multiplexer's A0-A2 pins to another address, or move the sensor"
            )


class KitSensor(_OnTheBus):
    """A sensor in a kit profile: which part, at which I2C address (or multiplexer path), measuring what."""

    part: str = Field(description="part name in edge/parts, e.g. bme280")
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
        return self

    @field_validator("sensors")
    @classmethod
    def _one_per_path(cls, sensors: list[KitSensor]) -> list[KitSensor]:
        check_paths([(s.sensor_name, s) for s in sensors])
        return sensors


def _check_read_quantities(quantities: list[str]) -> list[str]:
    unknown = [q for q in quantities if q not in QUANTITIES and q not in DERIVED_QUANTITIES]
    if unknown:
        raise ValueError(
            f"unknown quantities {unknown}: use measured or derived names from kits/quantities.py "
            f"({', '.join([*QUANTITIES, *DERIVED_QUANTITIES])})"
        )
    return quantities


class Threshold(_Model):
    """A line drawn on a chart: a guideline value of a quantity (measured or derived), with its source."""

    quantity: str
    value: float
    label: str
    source: str = ""

    @field_validator("quantity")
    @classmethod
    def _known(cls, value: str) -> str:
        return _check_read_quantities([value])[0]


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
    derived: list[Kind] = Field(
        default_factory=list,
        description=f"derived quantities a deployment of this use-case computes on read "
        f"({', '.join(KINDS)}); their parameters (a bin's depth, a clamp's ratio) are set per deployment",
    )
    headline: list[str] = Field(
        default_factory=list,
        description="the quantities a person reads first, measured or derived (current/power: every "
        "channel's); empty: all. Pages, kiosk and exports show these, the raw ones a click away",
    )

    @field_validator("quantities")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _check_quantities(value)

    @model_validator(mode="after")
    def _headline_is_known_and_made(self) -> UseCase:
        made = {q for kind in self.derived for q in OUTPUTS_OF_KIND[kind]}
        for name in self.headline:
            names = expand(name)
            _check_read_quantities(list(names))
            if set(names) <= DERIVED_QUANTITIES.keys() and not set(names) & made:
                raise ValueError(
                    f"headline {name!r} is a derived quantity, but derived does not make it: add the kind "
                    f"that makes it to derived ({', '.join(KINDS)}) or remove it from headline"
                )
        return self


class MqttSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = Field(
        default=None, description="PEM file on the Pi of the CA that signed the broker's certificate"
    )
    ca_pem: str | None = Field(
        default=None,
        max_length=65_536,
        description="the same CA as PEM text, sent by the server with the config (when no ca_file)",
    )
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


class DeviceSensor(_OnTheBus):
    """A sensor on a device's bus (or behind a multiplexer channel), as the agent should read it."""

    name: SensorName
    part: str
    interval_s: float = Field(default=10.0, gt=0, le=86400)
    options: dict[str, Any] = Field(default_factory=dict, description="driver options, see its module")
    filter: SensorFilter | None = None
    stuck_after: int = Field(
        default=60, ge=0, description="identical readings in a row that flag the sensor stuck; 0: never"
    )
    enabled: bool = Field(default=True, description="false: kept in the config but not read")


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
    config_version: int | None = Field(
        default=None, ge=1, description="the server's device config version this is (reported in meta)"
    )

    @field_validator("sensors")
    @classmethod
    def _one_sensor_per_path(cls, sensors: list[DeviceSensor]) -> list[DeviceSensor]:
        check_paths([(s.name, s) for s in sensors])
        return sensors

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
