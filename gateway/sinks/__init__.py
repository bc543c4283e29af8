"""Sinks: where the gateway writes readings (the embedded store, InfluxDB 1.x, InfluxDB 2).

One contract, one registry. A sink is opened with :meth:`Sink.open`, takes batches with
:meth:`Sink.write` (durable on return, raises :class:`SinkError` on any failure, never
half-silent) and is closed with :meth:`Sink.close`. ``SINKS`` maps a URL scheme to a
``"module:factory"`` imported lazily, so a gateway never imports a client it does not use:
a new sink is one module in ``gateway/sinks/`` plus one line here.

The InfluxDB schema every sink writes (a fixed contract the Grafana dashboards rely on) is in
``gateway/sinks/README.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol, cast, runtime_checkable

from gateway.influx.urls import ServiceUrl
from gateway.store.base import DeadLetter
from kits.errors import ConfigError, SuitcaseError
from kits.wire import Record

__all__ = [
    "REFUSED_STATUSES",
    "SINKS",
    "DeadLetterSink",
    "NamedWriterSink",
    "Sink",
    "SinkError",
    "SinkRefused",
    "SinkUrl",
    "open_sink",
    "parse_sink_url",
]

# URL scheme -> "module:factory(url) -> Sink".
SINKS: dict[str, str] = {
    "sqlite": "gateway.sinks.sqlite:from_url",
    "influxdb1": "gateway.sinks.influxdb1:from_url",
    "influxdb": "gateway.sinks.influxdb:from_url",
}


class SinkError(SuitcaseError):
    """A sink could not take a batch; the gateway keeps the batch and retries with backoff."""


class SinkRefused(SinkError):
    """The sink refused the batch for its *content*; writing the same points again fails the same way.

    InfluxDB answering 400 (a field-type conflict, a partial write, a series or tag-value limit),
    413 or 422 (points beyond the retention). The gateway splits the batch until it has found the
    messages the sink refuses, dead-letters them with this error's message, and writes the rest.
    Only unreachability, timeouts and 5xx (plain :class:`SinkError`) hold the acks.
    """


# HTTP statuses of an InfluxDB write that mean "these points", not "this server" or "this config".
REFUSED_STATUSES = frozenset({400, 413, 422})


@runtime_checkable
class Sink(Protocol):
    """Where readings go. ``name`` names it in logs and metrics; ``required`` gates the ack."""

    name: str
    required: bool

    def open(self) -> None: ...
    def write(self, batch: Sequence[Record]) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class DeadLetterSink(Protocol):
    """A sink that also keeps dead letters where the server reads them (the InfluxDB sinks)."""

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...


@runtime_checkable
class NamedWriterSink(Protocol):
    """A sink that keeps points of its own in the store (devices seen, on InfluxDB): the gateway
    names it by its client id before opening it, so a restarted gateway continues its points."""

    def name_writer(self, writer: str) -> None: ...


SinkUrl = ServiceUrl  # the sinks' name for the shared URL parser (gateway/influx/urls.py)


def parse_sink_url(url: str) -> SinkUrl:
    """Parse ``url``; a plain path (no ``://``) is the embedded SQLite store."""
    return ServiceUrl(url if "://" in url else f"sqlite:///{url}", what="sink")


def open_sink(url: str) -> Sink:
    """Create (not yet open) the sink named by ``url``.

    Every sink takes ``?required=false`` to be written best-effort: the gateway then acks
    without waiting for it, keeps a bounded backlog for it and counts what it drops. Every sink
    also takes ``orgs=a,b`` (only those organisations' readings: an organisation's own store) or
    ``skip_orgs=a,b`` (all but those: the default store beside them); see ``gateway/sinks/_orgs.py``.

    Raises:
        ConfigError: the scheme is unknown or an option is wrong.
    """
    scheme = url.partition("://")[0] if "://" in url else "sqlite"
    target = SINKS.get(scheme)
    if target is None:
        raise ConfigError(
            f"sink URL {url.split('?', 1)[0]!r} has an unknown scheme {scheme!r}: use "
            f"{' or '.join(s + '://...' for s in sorted(SINKS))}, or a plain file path"
        )
    module_name, _, attr = target.partition(":")
    factory = cast(Callable[[str], Sink], getattr(importlib.import_module(module_name), attr))
    from gateway.sinks._orgs import split_org_options, wrap_for_orgs

    plain, only, skip = split_org_options(url)
    return wrap_for_orgs(factory(plain), only, skip)
