"""A sink whose write kills the thread that calls it: registered by tests that need a dying gateway."""

from __future__ import annotations

from collections.abc import Sequence

from kits.wire import Record


class SinkCrash(BaseException):
    """What no ``except Exception`` catches: stands for whatever kills a worker thread."""


class DyingSink:
    """Opens and closes fine; its first write raises :class:`SinkCrash`."""

    name = "dying"
    required = True

    def open(self) -> None:
        """Nothing to open."""

    def write(self, batch: Sequence[Record]) -> None:
        raise SinkCrash(f"the dying sink was given {len(batch)} readings")

    def close(self) -> None:
        """Nothing to close."""


def from_url(url: str) -> DyingSink:
    """The factory of ``dying://`` URLs, for ``gateway.sinks.SINKS``."""
    return DyingSink()
