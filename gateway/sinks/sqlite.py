"""The ``sqlite`` sink: the embedded time-series store of ``gateway/store/sqlite.py``.

Opened from a URL (``sqlite:///path``, what ``suitcase gateway run`` uses) the sink writes from a
child process (``gateway/sinks/_writer_process.py``) so the gateway decodes the next batch on
the other core meanwhile; ``?process=false`` writes in the gateway's own process, as a sink given
an open store always does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from gateway.sinks import SinkError, parse_sink_url
from gateway.sinks._writer_process import WriterProcess
from gateway.store import SqliteStore, StoreError
from gateway.store.sqlite import SeriesColumns, series_columns
from gateway.store.sqlite import from_url as store_from_url
from kits.wire import Record

__all__ = ["SqliteSink", "from_url"]

log = logging.getLogger(__name__)


class SqliteSink:
    """Writes batches into a :class:`SqliteStore` (durable on return: WAL, synchronous=FULL).

    Args:
        store: an open store (the sink does not close it), or None to open ``url`` on :meth:`open`.
        url: ``sqlite:///path`` or a plain path, used when ``store`` is None.
        required: whether the gateway waits for this sink before acking.
        rollup_every_s: refresh the rollups at most this often (of several writers of one file,
            whichever is due first: :meth:`SqliteStore.refresh_rollups_if_due`).
        retention_every_s: apply each org's retention at most this often.
        clock: UTC epoch seconds now (retention cut-off, and the rollup refresh recorded in the
            file for the other writers).
        monotonic: seconds for this sink's own periods (a clock that never goes back).
        process: write from a child process; default: yes for a ``url``, no for a ``store``
            (which is already open in this process).
    """

    def __init__(
        self,
        store: SqliteStore | None = None,
        *,
        url: str = "",
        required: bool = True,
        rollup_every_s: float = 5.0,
        retention_every_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        process: bool | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if store is None and not url:
            raise SinkError("the sqlite sink needs a store or a URL such as sqlite:///readings.db")
        if store is not None and process:
            raise SinkError(
                "a sqlite sink given an open store writes in this process: pass url= for a writer process"
            )
        self.store = store
        self.url = url
        self.required = required
        self.name = f"sqlite:{store.path if store is not None else url}"
        self._owned = store is None
        self.rollup_every_s = rollup_every_s
        self.retention_every_s = retention_every_s
        self._clock = clock
        self._monotonic = monotonic
        self._next_rollup = monotonic() + rollup_every_s
        self._next_retention = monotonic() + retention_every_s
        self._writer: WriterProcess | None = None
        if store is None and (process is None or process):
            self._writer = WriterProcess(
                url,
                rollup_every_s=rollup_every_s,
                retention_every_s=retention_every_s,
            )

    @property
    def process(self) -> bool:
        """Whether the writes happen in a child process."""
        return self._writer is not None

    def open(self) -> None:
        """Open the store file (creating it) if the sink was given a URL.

        Raises:
            SinkError: the file cannot be opened as a store; the message says why.
        """
        if self._writer is not None:
            self._writer.start()
        elif self.store is None:
            try:
                self.store = store_from_url(self.url)
            except StoreError as exc:
                raise SinkError(str(exc)) from exc

    def write(self, batch: Sequence[Record]) -> None:
        """Write ``batch`` in one transaction.

        Raises:
            SinkError: the sink is not open or the write failed (nothing of it was written).
        """
        if self._writer is not None:
            if batch:
                self._writer.write(series_columns(batch))
            return
        self._write_here(lambda store: store.write(batch))

    def write_series(self, series: SeriesColumns) -> None:
        """Write readings grouped per series in this process (the writer process's entry).

        Raises:
            SinkError: the sink is not open or the write failed (nothing of it was written).
        """
        self._write_here(lambda store: store.write_series(series))

    def _write_here(self, write: Callable[[SqliteStore], None]) -> None:
        if self.store is None:
            raise SinkError(f"sink {self.name} is not open: call open() first")
        try:
            write(self.store)
        except StoreError as exc:
            raise SinkError(str(exc)) from exc
        self._maintain()

    def _maintain(self) -> None:
        # The batch is durable already: a failed refresh is logged and retried next period.
        assert self.store is not None
        now = self._monotonic()
        try:
            if now >= self._next_retention:
                self._next_retention = now + self.retention_every_s
                self.store.apply_retention(self._clock())
            if now >= self._next_rollup:
                self._next_rollup = now + self.rollup_every_s
                # Once per period per file: of several gateways writing it, one refreshes.
                self.store.refresh_rollups_if_due(self._clock(), self.rollup_every_s)
        except StoreError as exc:
            log.warning("sink %s: rollup/retention maintenance failed: %s", self.name, exc)

    def close(self) -> None:
        """Stop the writer process, or close the store if this sink opened it."""
        if self._writer is not None:
            self._writer.close()
        if self._owned and self.store is not None:
            self.store.close()
            self.store = None


def from_url(url: str) -> SqliteSink:
    """Create the sink of ``sqlite:///path[?required=false][&process=false]`` or a plain path."""
    parsed = parse_sink_url(url)
    required = parsed.take_bool("required", True)
    process = parsed.take_bool("process", True)
    parsed.done()
    return SqliteSink(url=parsed.redacted, required=required, process=process)
