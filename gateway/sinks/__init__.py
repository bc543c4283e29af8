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
from urllib.parse import parse_qsl, urlsplit

from kits.errors import ConfigError, SuitcaseError
from kits.wire import Record

__all__ = [
    "REFUSED_STATUSES",
    "SINKS",
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


class SinkUrl:
    """A parsed sink URL: ``scheme://host:port/path?option=value``.

    Options are read with :meth:`take`; :meth:`done` refuses any option left unread, so a
    misspelt option fails with the list of the right ones.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.path = parts.path
        self._options = dict(parse_qsl(parts.query, keep_blank_values=True))
        self._known: list[str] = []

    def take(self, key: str, default: str) -> str:
        """Return option ``key`` (or ``default``) and mark it known."""
        self._known.append(key)
        return self._options.pop(key, default)

    def take_float(self, key: str, default: float) -> float:
        raw = self.take(key, str(default))
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"sink {self.redacted}: {key}={raw!r} is not a number") from exc

    def take_bool(self, key: str, default: bool) -> bool:
        raw = self.take(key, "true" if default else "false").lower()
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"sink {self.redacted}: {key}={raw!r}: use true or false")
        return raw in ("true", "1", "yes")

    def done(self) -> None:
        """Raise ConfigError naming any option that was not read."""
        if self._options:
            raise ConfigError(
                f"sink {self.redacted}: unknown option(s) {', '.join(sorted(self._options))}: "
                f"{self.scheme} takes {', '.join(sorted(self._known))}"
            )

    @property
    def redacted(self) -> str:
        """The URL without secrets, fit for logs and errors."""
        return self.url.split("?", 1)[0]


def parse_sink_url(url: str) -> SinkUrl:
    """Parse ``url``; a plain path (no ``://``) is the embedded SQLite store."""
    return SinkUrl(url if "://" in url else f"sqlite:///{url}")


def open_sink(url: str) -> Sink:
    """Create (not yet open) the sink named by ``url``.

    Every sink takes ``?required=false`` to be written best-effort: the gateway then acks
    without waiting for it, keeps a bounded backlog for it and counts what it drops.

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
    return factory(url)
