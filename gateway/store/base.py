"""What every time-series store exchanges: dead letters, device summaries and the store error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kits.errors import SuitcaseError
from kits.wire import Record

__all__ = ["DeadLetter", "DeviceSeen", "Reader", "Store", "StoreError", "Window", "check_window_width"]


class StoreError(SuitcaseError):
    """The store could not be opened, read or written; the message says which and what to do."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that broke the wire contract, kept with its reason (never dropped silently).

    ``code`` is the stable slug of the error class (``kits.errors.WireError.code``).
    """

    received_at: float
    topic: str
    payload: bytes
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    """A device that has readings in the store, registered or not.

    ``first_seen`` and ``last_seen`` are the times (UTC epoch seconds) of its oldest and newest
    readings; ``readings`` counts distinct readings (a redelivered reading counts once).
    """

    org: str
    device: str
    first_seen: float
    last_seen: float
    readings: int


@dataclass(frozen=True, slots=True)
class Window:
    """One downsampled window of one series: readings with ``start <= time < start + every``."""

    org: str
    device: str
    sensor: str
    quantity: str
    start: float
    count: int
    mean: float
    min: float
    max: float


class Reader(Protocol):
    """The read side every backend answers (SQL on SQLite, InfluxQL on 1.x, Flux on 2.x)."""

    def readings(
        self,
        device: str,
        start: float,
        end: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        limit: int = 100_000,
    ) -> list[Record]: ...
    def latest(self, device: str | None = None) -> list[Record]: ...
    def windows(
        self,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
    ) -> list[Window]: ...
    def close(self) -> None: ...


class Store(Protocol):
    """The interface every time-series store backend offers (the SQLite one is the reference)."""

    def write(self, records: Sequence[Record]) -> None: ...
    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...
    def readings(
        self,
        device: str,
        start: float,
        end: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        limit: int = 100_000,
    ) -> list[Record]: ...
    def latest(self, device: str | None = None) -> list[Record]: ...
    def devices(self) -> list[DeviceSeen]: ...
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...
    def count_readings(self) -> int: ...
    def close(self) -> None: ...


def check_window_width(every: float) -> None:
    """Raise StoreError unless ``every`` (a window width in seconds, for ``windows()``) is positive."""
    if not every > 0:
        raise StoreError(f"window width {every} s is not positive: use e.g. 60, 3600 or 86400")
