"""The time-series store: where the gateway writes readings and dead letters, and the server reads.

Backends are picked by URL scheme through a registry of name -> ``"module:attr"`` factories,
imported lazily so a gateway never imports a backend it does not use. A factory takes the URL
(or plain path) and returns the opened store.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from gateway.store.base import (
    FINE_WIDTHS,
    ROLLUP_WIDTHS,
    DeadLetter,
    DeviceKey,
    DeviceSeen,
    Reader,
    SeriesWindows,
    Store,
    StoreError,
    Window,
    series_of,
    windows_of,
)
from gateway.store.derived import DerivedReader
from gateway.store.routed import OrgRoutedReader
from gateway.store.sqlite import SqliteStore

__all__ = [
    "BACKENDS",
    "FINE_WIDTHS",
    "READERS",
    "ROLLUP_WIDTHS",
    "DeadLetter",
    "DerivedReader",
    "DeviceKey",
    "DeviceSeen",
    "OrgRoutedReader",
    "Reader",
    "SeriesWindows",
    "SqliteStore",
    "Store",
    "StoreError",
    "Window",
    "open_reader",
    "open_store",
    "series_of",
    "windows_of",
]

# URL scheme -> "module:factory". A new backend is one module in gateway/store/ plus one line here.
BACKENDS: dict[str, str] = {
    "sqlite": "gateway.store.sqlite:from_url",
}

# URL scheme -> "module:factory" of the read side (gateway.store.base.Reader) of each backend.
# InfluxDB is read in InfluxQL on /query whichever version runs: 1.x natively, 2.x and 3.x through
# their v1-compatible /query (so the 2.x sink's influxdb:// URL opens the same reader).
READERS: dict[str, str] = {
    "sqlite": "gateway.store.sqlite:from_url",
    "influxdb1": "gateway.store.influxdb1:from_url",
    "influxdb": "gateway.store.influxdb1:from_v2_url",
}


def open_store(url_or_path: str | Path) -> SqliteStore:
    """Open the store at ``url_or_path``.

    ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db`` (SQLAlchemy's convention) or
    a plain path open the embedded SQLite store.

    Raises:
        StoreError: the scheme is unknown, or the store cannot be opened.
    """
    text = str(url_or_path)
    return cast(SqliteStore, _factory(BACKENDS, url_or_path)(text))


def open_reader(url_or_path: str | Path) -> Reader:
    """Open the read side of the store at ``url_or_path``, whichever backend a city runs.

    ``sqlite:///...`` or a path (the embedded store), ``influxdb1://host:port?...`` or
    ``influxdb://host:port?token=...&bucket=...`` (both read in InfluxQL on ``/query``); the
    options are the sinks' (same URL).

    Raises:
        StoreError: the scheme is unknown, or the store cannot be opened.
    """
    text = str(url_or_path)
    return cast(Reader, _factory(READERS, url_or_path)(text))


def _factory(registry: dict[str, str], url_or_path: str | Path) -> Callable[[str], object]:
    """The ``module:factory`` that ``registry`` names for the scheme of ``url_or_path``, imported."""
    text = str(url_or_path)
    scheme, sep, _ = text.partition("://")
    if not sep or isinstance(url_or_path, Path):
        scheme = "sqlite"
    target = registry.get(scheme)
    if target is None:
        raise StoreError(
            f"store URL {text.split('?', 1)[0]!r} has an unknown scheme {scheme!r}: use "
            f"{' or '.join(s + '://...' for s in sorted(registry))}, or a plain file path"
        )
    module_name, _, attr = target.partition(":")
    return cast(Callable[[str], object], getattr(importlib.import_module(module_name), attr))
