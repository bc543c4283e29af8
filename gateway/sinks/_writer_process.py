"""A child process that owns the embedded store's writes, so the gateway decodes while it writes.

SQLite releases the GIL for every row it steps, and a thread decoding messages at the same
time then makes each row wait for the GIL: in one process the two only take turns. In a child
process the write runs on the other core. The gateway's process groups a batch per series
(:func:`gateway.store.sqlite.series_columns`) and sends it as ``array('d')`` columns, which
pickle as raw bytes; the child writes them in one transaction (durable: WAL, synchronous=FULL)
and only then answers, so "written" still means "on disk" when :meth:`WriterProcess.write`
returns. The child also refreshes the rollups and applies retention, as the in-process sink does.

A child that dies or stops answering fails the write with :class:`SinkError` (the gateway keeps
the batch and retries) and is started afresh on the next write.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from array import array
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from gateway.sinks import SinkError
from gateway.store.sqlite import SeriesColumns

__all__ = ["WriterProcess"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 30.0


class WriterProcess:
    """Writes batches into the store at ``url`` from a child process.

    Args:
        url: the store, ``sqlite:///path`` or a plain path (created if missing).
        rollup_every_s: refresh the rollups at most this often (in the child).
        retention_every_s: apply retention at most this often (in the child).
        reply_timeout_s: how long a write may take before the child is killed and the write fails.
    """

    def __init__(
        self, url: str, *, rollup_every_s: float, retention_every_s: float, reply_timeout_s: float = 120.0
    ) -> None:
        self.url = url
        self.rollup_every_s = rollup_every_s
        self.retention_every_s = retention_every_s
        self.reply_timeout_s = reply_timeout_s
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def start(self) -> None:
        """Start the child, unless it runs, and wait until it has opened the store.

        Raises:
            SinkError: the child could not open the store (the message says why) or did not start.
        """
        if self.pid is not None:
            return
        self._stop_child()  # one that died: reap it
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve,
            args=(child, self.url, self.rollup_every_s, self.retention_every_s),
            name="suitcase-store-writer",
            daemon=True,
        )
        proc.start()
        child.close()
        self._conn, self._proc = parent, proc
        self._answer(_START_TIMEOUT_S, "open the store")
        log.info("store writer for %s runs as process %s", self.url, proc.pid)

    def write(self, series: SeriesColumns) -> None:
        """Write ``series`` in the child; durable on return.

        Raises:
            SinkError: the store refused the batch, or the child died or hung (it is restarted on
                the next write); either way the batch counts as not written.
        """
        self.start()  # again, if the last one died
        assert self._conn is not None
        packed = {key: (array("d", times), array("d", values)) for key, (times, values) in series.items()}
        try:
            self._conn.send(packed)
        except OSError as exc:
            self._stop_child()
            raise SinkError(
                f"store writer for {self.url} is gone ({exc}); it restarts on the next write"
            ) from exc
        self._answer(self.reply_timeout_s, f"write {sum(len(t) for t, _ in packed.values())} readings")

    def _answer(self, timeout: float, action: str) -> None:
        assert self._conn is not None and self._proc is not None
        deadline = time.monotonic() + timeout
        try:
            while not self._conn.poll(0.5):
                if not self._proc.is_alive():
                    raise EOFError(f"exit code {self._proc.exitcode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer after {timeout:.0f} s")
            reply: tuple[str, str] = self._conn.recv()
        except (EOFError, OSError, TimeoutError) as exc:
            self._stop_child()
            raise SinkError(
                f"store writer for {self.url} could not {action} ({exc}); it restarts on the next write"
            ) from exc
        status, detail = reply
        if status != "ok":
            raise SinkError(detail)

    def close(self) -> None:
        """Ask the child to close the store and exit; kill it if it does not."""
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(10)
            except OSError:
                pass
        self._stop_child()

    def _stop_child(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
            self._proc.close()
        if self._conn is not None:
            self._conn.close()
        self._conn, self._proc = None, None


def _serve(conn: Connection, url: str, rollup_every_s: float, retention_every_s: float) -> None:
    """The child: open an in-process sqlite sink, then write each batch received and answer.

    Ctrl-C and SIGTERM reach the whole process group (a terminal, systemd): the child ignores
    them and ends when the gateway, stopping, says so or goes away, so the gateway's last batch
    is still written.
    """
    from gateway.sinks.sqlite import SqliteSink  # imported here: the child starts from a fresh interpreter

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    sink = SqliteSink(
        url=url, rollup_every_s=rollup_every_s, retention_every_s=retention_every_s, process=False
    )
    try:
        sink.open()
    except SinkError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ok", ""))
    try:
        while True:
            try:
                message: Any = conn.recv()
            except EOFError:  # the gateway went away
                return
            if message is None:
                return
            try:
                sink.write_series(message)
                reply = ("ok", "")
            except SinkError as exc:
                reply = ("error", str(exc))
            try:
                conn.send(reply)
            except OSError:  # the gateway went away mid-write (killed): it redelivers, nothing to say
                return
    finally:
        sink.close()
