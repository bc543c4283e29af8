"""The read side of InfluxDB 1.x: range, latest and downsampled windows in InfluxQL.

Open it with the very URL of the ``influxdb1`` sink (``influxdb1://host:8086?database=...``). The
schema is gateway/sinks/README.md's: measurement = quantity, tags org/device/sensor, field
``value``, one database per org. A device id is unique across orgs, so a read asks every
``suitcase_*`` database (one HTTP request, one statement per database) and merges the answers.
Times come back at the microsecond resolution the sink writes (``Record.time`` rounded to 1 us).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gateway.sinks import SinkError, parse_sink_url
from gateway.sinks._http import HttpClient
from gateway.sinks._lines import DEFAULT_DATABASE
from gateway.store.base import StoreError, Window, check_window_width
from kits.wire import Record

__all__ = ["InfluxDB1Reader", "from_url"]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000) * 1000


class InfluxDB1Reader:
    """Answers the store's read queries from InfluxDB 1.x.

    Args:
        http: a client of the server.
        database: the database template of the sink (``{org}`` = org slug, '-' -> '_').
    """

    def __init__(self, http: HttpClient, database: str = DEFAULT_DATABASE) -> None:
        self.http = http
        self.database = database
        self._prefix, _, self._suffix = database.partition("{org}")

    def _databases(self) -> list[str]:
        series = self._query(["SHOW DATABASES"])[0]
        names = [row[0] for s in series for row in s.get("values", [])]
        return [n for n in names if n.startswith(self._prefix) and n.endswith(self._suffix)]

    def _query(self, statements: list[str]) -> list[list[dict[str, Any]]]:
        try:
            status, body = self.http.request("POST", "/query", {"q": ";".join(statements), "epoch": "ns"})
        except SinkError as exc:
            raise StoreError(str(exc)) from exc
        if status != 200:
            raise StoreError(
                f"InfluxDB 1.x at {self.http.base} answered HTTP {status} to a query: {body[:300]!r}"
            )
        results = json.loads(body).get("results", [])
        out: list[list[dict[str, Any]]] = []
        for result in results:
            if "error" in result:
                raise StoreError(f"InfluxDB 1.x at {self.http.base}: query failed: {result['error']}")
            out.append(result.get("series", []))
        return out

    def _each(
        self, template: str, device: str | None, sensor: str | None, quantity: str | None, where: str = ""
    ) -> Iterator[tuple[str, dict[str, str], list[str], list[list[Any]]]]:
        conditions = [f'"device" = {_quote(device)}'] if device else []
        if sensor:
            conditions.append(f'"sensor" = {_quote(sensor)}')
        if where:
            conditions.append(where)
        source = f'"{quantity}"' if quantity else "/.*/"
        dbs = self._databases()
        if not dbs:
            return
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        statements = [template.format(source=f'"{db}"..{source}', where=clause) for db in dbs]
        for series_list in self._query(statements):
            for s in series_list:
                yield s["name"], s.get("tags", {}), s["columns"], s["values"]

    def readings(
        self,
        device: str,
        start: float,
        end: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        limit: int = 100_000,
    ) -> list[Record]:
        """Return ``device``'s readings with ``start <= time < end``, oldest first."""
        where = f"time >= {_ns(start)} AND time < {_ns(end)}"
        out = [
            Record(tags["org"], device, tags["sensor"], name, float(row[1]), row[0] / 1e9)
            for name, tags, _, rows in self._each(
                'SELECT "value" FROM {source}{where} GROUP BY "org", "sensor"',
                device,
                sensor,
                quantity,
                where,
            )
            for row in rows
        ]
        out.sort(key=lambda r: (r.time, r.sensor, r.quantity))
        return out[:limit]

    def latest(self, device: str | None = None) -> list[Record]:
        """Return the newest reading of each (device, sensor, quantity), of one device or all."""
        out = [
            Record(tags["org"], tags["device"], tags["sensor"], name, float(row[1]), row[0] / 1e9)
            for name, tags, _, rows in self._each(
                'SELECT last("value") FROM {source}{where} GROUP BY "org", "device", "sensor"',
                device,
                None,
                None,
            )
            for row in rows
        ]
        out.sort(key=lambda r: (r.device, r.sensor, r.quantity))
        return out

    def windows(
        self,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
    ) -> list[Window]:
        """Return ``device``'s readings downsampled to epoch-aligned windows of ``every`` seconds."""
        check_window_width(every)
        where = f"time >= {_ns(start)} AND time < {_ns(end)}"
        template = (
            'SELECT count("value"), mean("value"), min("value"), max("value") FROM {source}{where} '
            f'GROUP BY time({round(every * 1000)}ms), "org", "sensor" fill(none)'
        )
        out = [
            Window(
                tags["org"], device, tags["sensor"], name, row[0] / 1e9, int(row[1]), *map(float, row[2:5])
            )
            for name, tags, _, rows in self._each(template, device, sensor, quantity, where)
            for row in rows
            if row[1]
        ]
        out.sort(key=lambda w: (w.start, w.sensor, w.quantity))
        return out

    def close(self) -> None:
        self.http.close()


def from_url(url: str) -> InfluxDB1Reader:
    """Open the reader of an ``influxdb1://`` URL (the sink's URL; write-only options are ignored)."""
    u = parse_sink_url(url)
    http = HttpClient(
        u.host,
        u.port or 8086,
        tls=u.take_bool("tls", False),
        timeout=u.take_float("timeout", 30.0),
        username=u.take("username", ""),
        password=u.take("password", ""),
        what="InfluxDB 1.x",
    )
    return InfluxDB1Reader(http, u.take("database", DEFAULT_DATABASE))
