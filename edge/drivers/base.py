"""The driver contract (STYLE.md, "Contracts are small and typed").

A driver module exposes ``INFO`` (a :class:`DriverInfo`) and
``create(i2c, address, options) -> Driver``. The driver wraps a blocking, loosely typed Adafruit
driver and never lets its types leak: a read returns a :class:`Reading` of registered quantities
or :class:`NotReady`, and a failure raises :class:`kits.errors.SensorError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kits.quantities import Quantity

__all__ = [
    "Driver",
    "DriverFactory",
    "DriverInfo",
    "I2CBus",
    "NotReady",
    "ReadContext",
    "Reading",
]


@runtime_checkable
class I2CBus(Protocol):
    """The part of ``busio.I2C`` that the Adafruit drivers call (Blinka on a Pi, or an emulator)."""

    def try_lock(self) -> bool: ...
    def unlock(self) -> None: ...
    def scan(self) -> list[int]: ...
    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None: ...
    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None: ...
    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: Any,
        buffer_in: Any,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """What a part is and how to talk to it.

    Attributes:
        part: the driver name used in configs and the registry, e.g. ``bme280``.
        title: a human name of the part.
        addresses: the I2C addresses the part can have, default first.
        quantities: what one read returns, with units from :mod:`kits.quantities`.
        chip_id_register: the register holding the chip id, or None if the part has none.
        chip_id: the value of that register for this part.
        look_alikes: other chip ids seen at the same register and addresses, with what they are
            (a BMP280 answers at the BME280's address with 0x58).
        min_interval_s: the shortest interval between reads the part supports well.
        warmup_s: how long after power-up or creation readings are not yet valid.
        probe: for parts without a one-byte chip-id register (Sensirion command sets, 16-bit
            register maps): ``probe(i2c, address)`` returns what identifies the part (e.g.
            ``serial 0x1234abcd``) or None when the chip at ``address`` is not this part.
        burst: for parts sampled in a burst inside one read, the rate and count, e.g.
            ``64 samples at 400 Hz``.
    """

    part: str
    title: str
    addresses: tuple[int, ...]
    quantities: tuple[Quantity, ...]
    chip_id_register: int | None = None
    chip_id: int | None = None
    look_alikes: Mapping[int, str] = field(default_factory=dict)
    min_interval_s: float = 1.0
    warmup_s: float = 0.0
    probe: Callable[[I2CBus, int], str | None] | None = None
    burst: str | None = None

    @property
    def quantity_names(self) -> tuple[str, ...]:
        """The names of the quantities, in the order the driver reports them."""
        return tuple(q.name for q in self.quantities)


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor's reading of its quantities: quantity name -> value in the registry unit."""

    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class NotReady:
    """The sensor has no valid value yet (warming up, conversion pending); try again later."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReadContext:
    """What a driver may need besides its bus.

    Attributes:
        time: the current UTC epoch time.
        neighbours: what the other sensors of the device just read, sensor name -> quantity ->
            value (an SGP40 compensates with humidity and temperature).
    """

    time: float
    neighbours: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def neighbour_value(self, quantity: str) -> float | None:
        """Return the first value of ``quantity`` any neighbour read, or None."""
        for values in self.neighbours.values():
            if quantity in values:
                return values[quantity]
        return None


class Driver(Protocol):
    """A created sensor driver.

    ``read`` raises :class:`kits.errors.SensorError` when the sensor does not answer or answers
    something impossible; the message says what to do.
    """

    def read(self, context: ReadContext) -> Reading | NotReady: ...


class DriverFactory(Protocol):
    """The ``create`` function of a driver module."""

    def __call__(self, i2c: I2CBus, address: int, options: Mapping[str, Any]) -> Driver: ...
