"""The ``influxdb1`` sink: InfluxDB 1.x through its line-protocol HTTP API (``POST /write``).

URL: ``influxdb1://host:8086?database=suitcase_{org}&username=&password=&tls=false&timeout=10``.
Each organisation's readings go to its own database (default ``suitcase_{org}``, the org slug
with '-' replaced by '_'), created on first use (``CREATE DATABASE`` is idempotent). The schema
is the fixed contract of ``gateway/sinks/README.md``; points are keyed by measurement, tags and
timestamp, so a redelivered reading overwrites its twin. Where the org's database holds the
rollup policies of ``suitcase gateway retention apply``, readings that arrive late are folded into
the rollups before the batch counts as written (``gateway/sinks/_late.py``).

Beside the readings, the sink keeps what the server reads without a shared file, in the ``meta``
database (default ``suitcase``): after each batch, one ``devices_seen`` point per device it
wrote (first and last reading time, readings written; one point per device and writer, overwritten:
the writer is the gateway's client id, and a restarted gateway reads its points back before its
first write and counts on from them, so a restart adds no series),
the same points again at the time they were written in ``devices_seen_log`` (retention policy
``seen_log``, an hour: what a server reads to learn which devices changed since it last looked),
and the dead letters the gateway hands it (:meth:`InfluxDB1Sink.write_dead_letters`). The read
side is ``gateway/store/influxdb1.py``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

from gateway.influx.http import HttpClient
from gateway.influx.influxql import quote_ident, quote_literal
from gateway.influx.lines import (
    DEFAULT_DATABASE,
    DEFAULT_META_DATABASE,
    SEEN_LOG_POLICY,
    database_name,
    encode_dead_letters,
    encode_lines,
    encode_seen,
    encode_seen_log,
    group_by_org,
    seen_log_policy,
)
from gateway.influx.query import post_query
from gateway.sinks import REFUSED_STATUSES, SinkError, SinkRefused, parse_sink_url
from gateway.sinks._late import LateFolder
from gateway.store.base import DeadLetter
from kits.wire import Record

__all__ = ["InfluxDB1Sink", "from_url"]

log = logging.getLogger(__name__)


class InfluxDB1Sink:
    """Writes readings to InfluxDB 1.x, one database per organisation.

    Args:
        host: InfluxDB's host.
        port: its HTTP port.
        database: the database template; ``{org}`` becomes the org slug with '-' -> '_'.
        username: a user allowed to write (and create databases), if auth is on.
        password: its password.
        tls: use HTTPS.
        timeout: seconds to wait for an answer before the write counts as failed.
        create_databases: issue ``CREATE DATABASE`` on first use of each database.
        required: whether the gateway waits for this sink before acking.
        clock: UTC epoch seconds now, to tell late readings (folded into the rollups) apart.
        wall_ns: this host's wall clock in ns, the time of the ``devices_seen_log`` points (readers
            compare it with theirs: keep the hosts' clocks in sync, as NTP does).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8086,
        *,
        database: str = DEFAULT_DATABASE,
        username: str = "",
        password: str = "",
        tls: bool = False,
        timeout: float = 10.0,
        create_databases: bool = True,
        required: bool = True,
        meta: str = DEFAULT_META_DATABASE,
        clock: Callable[[], float] = time.time,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.database = database
        self.meta = meta
        # This sink's devices_seen points: (org, device) -> (first, last, readings written).
        self._seen: dict[tuple[str, str], tuple[float, float, int]] = {}
        # Until the gateway names it (its client id, :meth:`name_writer`), a writer of its own.
        self._writer = uuid.uuid4().hex[:12]
        self._resume = False  # named: read the writer's points back before the first write
        self._wall_ns = wall_ns
        self._log_ns = 0  # the time of this writer's last devices_seen_log point
        self._log = True  # False once the meta database turned out to have no seen_log policy
        self._log_failed = False  # a log write failed (warned once)
        self.create_databases = create_databases
        self.required = required
        self.http = HttpClient(
            host,
            port,
            tls=tls,
            timeout=timeout,
            username=username,
            password=password,
            what="InfluxDB 1.x",
            error=SinkError,
        )
        self.name = f"influxdb1:{self.http.base}"
        self._created: set[str] = set()
        self.late = LateFolder(self.http, clock=clock)

    def name_writer(self, writer: str) -> None:
        """Keep the devices-seen points as ``writer`` (the gateway's client id, one per gateway).

        Its points of an earlier run are read back before the first write, so a restarted gateway
        counts on from them instead of starting a new series per device: with a fresh id each
        start, every restart of a gateway of 10,000 devices left 10,000 more series that every
        server's full read of devices seen reads forever.
        """
        self._writer = writer
        self._resume = True

    def _resume_seen(self) -> None:
        """Read this writer's ``devices_seen`` points back (none in a new meta database)."""
        statement = (
            'SELECT "first", "last", "readings", "org", "device" '
            f'FROM {quote_ident(self.meta)}.."devices_seen" WHERE "writer" = {quote_literal(self._writer)}'
        )
        answer = post_query(self.http, [statement], epoch="ns")
        if answer.results is None:
            raise SinkError(
                f"InfluxDB 1.x at {self.http.base} answered HTTP {answer.status} to the read of gateway "
                f"{self._writer}'s devices seen: {answer.body[:300].decode(errors='replace')}"
            )
        error = next((e for e in answer.errors() if "database not found" not in e), None)
        if error is not None:
            raise SinkError(
                f"InfluxDB 1.x at {self.http.base} refused the read of gateway {self._writer}'s "
                f"devices seen ({error}): give the gateway's user read rights on {self.meta}"
            )
        for series_list in answer.series():
            for series in series_list:
                for _, first, last, count, org, device in series["values"]:
                    self._seen[org, device] = (float(first), float(last), int(count))
        self._resume = False
        if self._seen:
            log.info("gateway %s counts on from %d devices seen", self._writer, len(self._seen))

    def open(self) -> None:
        """Create the meta database (the server's health probe looks for it); the org databases
        are created on first write."""
        if self.create_databases:
            try:
                self._create(self.meta)
            except SinkError as exc:  # InfluxDB down at start: the first write retries
                log.warning("%s", exc)

    def _create(self, db: str) -> None:
        answer = post_query(self.http, [f"CREATE DATABASE {quote_ident(db)}"])
        if answer.results is None or answer.errors():
            raise SinkError(
                f"InfluxDB 1.x at {self.http.base} refused CREATE DATABASE {db} (HTTP {answer.status}: "
                f"{answer.body[:200]!r}): give the gateway's user admin rights or create the database"
            )
        if db == self.meta:
            answer = post_query(self.http, [seen_log_policy(db)])
            # One an operator altered answers "already exists": it is there, which is all we need.
            if answer.results is None or any("already exists" not in e for e in answer.errors()):
                raise SinkError(
                    f"InfluxDB 1.x at {self.http.base} refused {seen_log_policy(db)} (HTTP {answer.status}: "
                    f"{answer.body[:200]!r}): give the gateway's user admin rights or run it yourself"
                )
        self._created.add(db)
        log.info("created InfluxDB database %s", db)

    def write(self, batch: Sequence[Record]) -> None:
        """Write ``batch``, one request per organisation.

        Raises:
            SinkRefused: InfluxDB refused the points' content (HTTP 400, 413, 422: a field-type
                conflict, a partial write, a series limit); the gateway finds the culprits.
            SinkError: InfluxDB is unreachable, timed out or answered otherwise. Organisations
                written before the failure are rewritten on retry, which overwrites, never doubles.
        """
        if self._resume:  # before the first write: a failure retries the batch, as a write's does
            self._resume_seen()
        for org, records in group_by_org(batch).items():
            db = database_name(self.database, org)
            if self.create_databases and db not in self._created:
                self._create(db)
            body = encode_lines(records, "ns")
            status, answer = self.http.request("POST", "/write", {"db": db, "precision": "ns"}, body)
            if status == 404 and self.create_databases:  # database dropped under us
                self._created.discard(db)
                self._create(db)
                status, answer = self.http.request("POST", "/write", {"db": db, "precision": "ns"}, body)
            if status != 204:
                raise (SinkRefused if status in REFUSED_STATUSES else SinkError)(
                    f"InfluxDB 1.x at {self.http.base} answered HTTP {status} to a write of "
                    f"{len(records)} points to {db}: {answer[:300].decode(errors='replace')}"
                )
            self.late.fold(db, records)
        self._write_seen(batch)

    def _write_seen(self, batch: Sequence[Record]) -> None:
        touched: dict[tuple[str, str], tuple[float, float, int]] = {}
        for rec in batch:
            key = (rec.org, rec.device)
            first, last, count = touched.get(key) or self._seen.get(key) or (rec.time, rec.time, 0)
            touched[key] = (min(first, rec.time), max(last, rec.time), count + 1)
        if touched:
            # The log first: a reader that sees a device's new point there has what devices_seen
            # will hold; the other order could leave a change only in devices_seen until a reader's
            # next full read, should the second write fail.
            self._write_log(touched)
            self._write_meta(encode_seen(touched, self._writer), f"{len(touched)} devices_seen")
            self._seen.update(touched)  # only once written: a retry counts the batch once

    def _write_log(self, touched: dict[tuple[str, str], tuple[float, float, int]]) -> None:
        if not self._log:
            return
        first_ns = max(self._wall_ns(), self._log_ns + 1)
        self._log_ns = first_ns + len(touched) - 1
        body = encode_seen_log(touched, self._writer, first_ns)
        try:
            self._write_meta(body, f"{len(touched)} devices_seen_log", policy=SEEN_LOG_POLICY)
        except SinkError as exc:
            # The log only spares readers a full read; they do one every few minutes anyway, so a
            # log write that fails (this host's clock over an hour behind: "points beyond
            # retention policy") delays the change that long and never fails the batch.
            if "retention policy not found" in str(exc):  # made with create_databases=false
                self._log = False
                log.warning(
                    "InfluxDB database %s has no retention policy %s: servers will read every "
                    "device seen on each read; create it with: %s",
                    self.meta,
                    SEEN_LOG_POLICY,
                    seen_log_policy(self.meta),
                )
            elif not self._log_failed:
                self._log_failed = True
                log.warning("devices_seen_log not written (servers see it within minutes): %s", exc)

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Write ``letters`` to the ``meta`` database, where the server reads them.

        Raises:
            SinkError: as :meth:`write`; a retry overwrites what was written, never doubles.
        """
        if letters:
            rows = [(d.received_at, d.topic, bytes(d.payload), d.code, d.reason) for d in letters]
            self._write_meta(encode_dead_letters(rows), f"{len(rows)} dead letters")

    def _write_meta(self, body: bytes, what: str, *, policy: str = "") -> None:
        if self.create_databases and self.meta not in self._created:
            self._create(self.meta)
        params = {"db": self.meta, "precision": "ns", **({"rp": policy} if policy else {})}
        status, answer = self.http.request("POST", "/write", params, body)
        if status == 404 and self.create_databases:
            self._create(self.meta)
            status, answer = self.http.request("POST", "/write", params, body)
        if status != 204:
            raise SinkError(
                f"InfluxDB 1.x at {self.http.base} answered HTTP {status} to a write of {what} to "
                f"{self.meta}: {answer[:300].decode(errors='replace')}"
            )

    def close(self) -> None:
        """Close the connection."""
        self.http.close()


def from_url(url: str) -> InfluxDB1Sink:
    """Create the sink of an ``influxdb1://host:port?...`` URL (options in the module docstring)."""
    u = parse_sink_url(url)
    sink = InfluxDB1Sink(
        u.host,
        u.port or 8086,
        database=u.take("database", DEFAULT_DATABASE),
        username=u.take("username", ""),
        password=u.take("password", ""),
        tls=u.take_bool("tls", False),
        timeout=u.take_float("timeout", 10.0),
        create_databases=u.take_bool("create_databases", True),
        required=u.take_bool("required", True),
        meta=u.take("meta", DEFAULT_META_DATABASE),
    )
    u.done()
    return sink
