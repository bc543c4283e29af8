"""The read side of InfluxDB 2: range, latest and downsampled windows in Flux.

Open it with the very URL of the ``influxdb`` sink (``influxdb://host:8086?org=...&token=...``).
The schema is gateway/sinks/README.md's: measurement = quantity, tags org/device/sensor, field
``value``, one bucket per org. A device id is unique across orgs, so a query unions every
``suitcase_*`` bucket (listed through the buckets API) in one Flux script.

No InfluxDB 2 runs on the test machines (VictoriaMetrics serves the write API but has no Flux):
this reader is tested against recorded annotated-CSV responses and the Flux it sends
(tests/gateway/test_store_influxdb2.py), and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from gateway.sinks import parse_sink_url
from gateway.sinks._lines import DEFAULT_DATABASE
from gateway.store.base import StoreError, Window, check_window_width
from kits.wire import Record

__all__ = ["FluxReader", "from_url"]


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _time(seconds: float) -> str:
    return f"time(v: {round(seconds * 1_000_000) * 1000})"


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or UTC).timestamp()
    return float(value)


class FluxReader:
    """Answers the store's read queries from InfluxDB 2 with Flux.

    Args:
        url: the server's base URL.
        token: an API token allowed to read the buckets.
        org: the InfluxDB organisation.
        bucket: the bucket template of the sink (``{org}`` = org slug, '-' -> '_').
        timeout: seconds to wait for an answer.
    """

    def __init__(
        self, url: str, *, token: str, org: str, bucket: str = DEFAULT_DATABASE, timeout: float = 30.0
    ) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient

        self.url = url
        self.org = org
        self.bucket = bucket
        prefix, _, suffix = bucket.partition("{org}")
        self._bucket_name = re.compile(f"^{re.escape(prefix)}.+{re.escape(suffix)}$")
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout * 1000))

    def buckets(self) -> list[str]:
        """Return the buckets this reader queries (those the bucket template names)."""
        try:
            found = self._client.buckets_api().find_buckets_iter()  # type: ignore[no-untyped-call]
            names = [b.name for b in found]
        except Exception as exc:
            raise StoreError(f"cannot list the buckets of InfluxDB at {self.url} ({exc})") from exc
        return sorted(n for n in names if self._bucket_name.match(n))

    def flux(
        self, start: str, stop: str, device: str | None, sensor: str | None, quantity: str | None
    ) -> str:
        """Return the common head of every query: buckets, range and filters."""
        sources = ", ".join(f"from(bucket: {_string(b)})" for b in self.buckets())
        conditions = ['r._field == "value"']
        if device:
            conditions.append(f"r.device == {_string(device)}")
        if sensor:
            conditions.append(f"r.sensor == {_string(sensor)}")
        if quantity:
            conditions.append(f"r._measurement == {_string(quantity)}")
        return (
            f"union(tables: [{sources}])\n"
            f"  |> range(start: {start}, stop: {stop})\n"
            f"  |> filter(fn: (r) => {' and '.join(conditions)})\n"
        )

    def _rows(self, script: str) -> Iterator[dict[str, Any]]:
        try:
            tables = self._client.query_api().query(script, org=self.org)
        except Exception as exc:
            raise StoreError(f"InfluxDB at {self.url}: Flux query failed ({exc})") from exc
        for table in tables:
            for record in table.records:
                yield record.values

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
        if not self.buckets():
            return []
        script = self.flux(_time(start), _time(end), device, sensor, quantity) + (
            '  |> keep(columns: ["_time", "_value", "_measurement", "org", "device", "sensor"])\n'
            '  |> group()\n  |> sort(columns: ["_time", "sensor", "_measurement"])\n'
            f"  |> limit(n: {int(limit)})\n"
        )
        return [
            Record(
                v["org"],
                v["device"],
                v["sensor"],
                v["_measurement"],
                float(v["_value"]),
                _seconds(v["_time"]),
            )
            for v in self._rows(script)
        ]

    def latest(self, device: str | None = None) -> list[Record]:
        """Return the newest reading of each (device, sensor, quantity), of one device or all."""
        if not self.buckets():
            return []
        script = self.flux("0", "now()", device, None, None) + "  |> last()\n"
        out = [
            Record(
                v["org"],
                v["device"],
                v["sensor"],
                v["_measurement"],
                float(v["_value"]),
                _seconds(v["_time"]),
            )
            for v in self._rows(script)
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
        if not self.buckets():
            return []
        script = self.flux(_time(start), _time(end), device, sensor, quantity) + (
            f"  |> window(every: {round(every * 1000)}ms)\n"
            "  |> reduce(identity: {count: 0, sum: 0.0, min: 1.0e308, max: -1.0e308},\n"
            "      fn: (r, accumulator) => ({count: accumulator.count + 1,\n"
            "          sum: accumulator.sum + r._value,\n"
            "          min: if r._value < accumulator.min then r._value else accumulator.min,\n"
            "          max: if r._value > accumulator.max then r._value else accumulator.max}))\n"
        )
        out = []
        for v in self._rows(script):
            count = int(v["count"])
            if count:
                out.append(
                    Window(
                        v["org"],
                        v["device"],
                        v["sensor"],
                        v["_measurement"],
                        _seconds(v["_start"]),
                        count,
                        float(v["sum"]) / count,
                        float(v["min"]),
                        float(v["max"]),
                    )
                )
        out.sort(key=lambda w: (w.start, w.sensor, w.quantity))
        return out

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def from_url(url: str) -> FluxReader:
    """Open the reader of an ``influxdb://`` URL (the sink's URL; write-only options are ignored)."""
    u = parse_sink_url(url)
    tls = u.take_bool("tls", False)
    return FluxReader(
        f"{'https' if tls else 'http'}://{u.host}:{u.port or 8086}",
        token=u.take("token", ""),
        org=u.take("org", "suitcase"),
        bucket=u.take("bucket", DEFAULT_DATABASE),
        timeout=u.take_float("timeout", 30.0),
    )
