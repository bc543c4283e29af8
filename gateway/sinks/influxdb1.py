"""The ``influxdb1`` sink: InfluxDB 1.x through its line-protocol HTTP API (``POST /write``).

URL: ``influxdb1://host:8086?database=suitcase_{org}&username=&password=&tls=false&timeout=10``.
Each organisation's readings go to its own database (default ``suitcase_{org}``, the org slug
with '-' replaced by '_'), created on first use (``CREATE DATABASE`` is idempotent). The schema
is the fixed contract of ``gateway/sinks/README.md``; points are keyed by measurement, tags and
timestamp, so a redelivered reading overwrites its twin. Where the org's database holds the
rollup policies of ``suitcase gateway retention apply``, readings that arrive late are folded into
the rollups before the batch counts as written (``gateway/sinks/_late.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from gateway.sinks import REFUSED_STATUSES, SinkError, SinkRefused, parse_sink_url
from gateway.sinks._http import HttpClient
from gateway.sinks._late import LateFolder
from gateway.sinks._lines import DEFAULT_DATABASE, database_name, encode_lines, group_by_org
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.create_databases = create_databases
        self.required = required
        self.http = HttpClient(
            host, port, tls=tls, timeout=timeout, username=username, password=password, what="InfluxDB 1.x"
        )
        self.name = f"influxdb1:{self.http.base}"
        self._created: set[str] = set()
        self.late = LateFolder(self.http, clock=clock)

    def open(self) -> None:
        """Nothing to do up front: the connection opens, and databases are created, on first write."""

    def _create(self, db: str) -> None:
        status, body = self.http.request("POST", "/query", {"q": f'CREATE DATABASE "{db}"'})
        if status != 200 or b'"error"' in body:
            raise SinkError(
                f"InfluxDB 1.x at {self.http.base} refused CREATE DATABASE {db} (HTTP {status}: "
                f"{body[:200]!r}): give the gateway's user admin rights or create the database"
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
    )
    u.done()
    return sink
