"""The ``sqlite`` sink: the embedded time-series store of ``gateway/store/sqlite.py``."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.sinks import SinkError, parse_sink_url
from gateway.store import SqliteStore, StoreError
from gateway.store.sqlite import from_url as store_from_url
from kits.wire import Record

__all__ = ["SqliteSink", "from_url"]


class SqliteSink:
    """Writes batches into a :class:`SqliteStore` (durable on return: WAL, synchronous=FULL).

    Args:
        store: an open store (the sink does not close it), or None to open ``url`` on :meth:`open`.
        url: ``sqlite:///path`` or a plain path, used when ``store`` is None.
        required: whether the gateway waits for this sink before acking.
    """

    def __init__(self, store: SqliteStore | None = None, *, url: str = "", required: bool = True) -> None:
        if store is None and not url:
            raise SinkError("the sqlite sink needs a store or a URL such as sqlite:///readings.db")
        self.store = store
        self.url = url
        self.required = required
        self.name = f"sqlite:{store.path if store is not None else url}"
        self._owned = store is None

    def open(self) -> None:
        """Open the store file (creating it) if the sink was given a URL."""
        if self.store is None:
            try:
                self.store = store_from_url(self.url)
            except StoreError as exc:
                raise SinkError(str(exc)) from exc

    def write(self, batch: Sequence[Record]) -> None:
        """Write ``batch`` in one transaction.

        Raises:
            SinkError: the sink is not open or the write failed (nothing of it was written).
        """
        if self.store is None:
            raise SinkError(f"sink {self.name} is not open: call open() first")
        try:
            self.store.write(batch)
        except StoreError as exc:
            raise SinkError(str(exc)) from exc

    def close(self) -> None:
        """Close the store if this sink opened it."""
        if self._owned and self.store is not None:
            self.store.close()
            self.store = None


def from_url(url: str) -> SqliteSink:
    """Create the sink of ``sqlite:///path[?required=false]`` or a plain path."""
    parsed = parse_sink_url(url)
    required = parsed.take_bool("required", True)
    parsed.done()
    return SqliteSink(url=parsed.redacted, required=required)
