"""The ``influxdb`` sink: InfluxDB 2 / Cloud through ``influxdb-client`` (``POST /api/v2/write``).

URL: ``influxdb://host:8086?org=ORG&token=TOKEN&bucket=suitcase_{org}&precision=ns&tls=false
&timeout=10``. Each organisation's readings go to its own bucket (default ``suitcase_{org}``, the
org slug with '-' replaced by '_'); InfluxDB 2 does not create buckets on write, so create them
with their retention (gateway/sinks/README.md). The schema is the fixed contract of that README.
``precision=ms`` suits VictoriaMetrics, which keeps millisecond timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.influx.lines import DEFAULT_DATABASE, database_name, encode_lines, group_by_org
from gateway.sinks import REFUSED_STATUSES, SinkError, SinkRefused, parse_sink_url
from kits.errors import ConfigError
from kits.wire import Record

__all__ = ["InfluxDB2Sink", "from_url"]

_PRECISIONS = ("ns", "us", "ms", "s")


class InfluxDB2Sink:
    """Writes readings to InfluxDB 2 (or anything serving its write API), one bucket per organisation.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8086``.
        token: an API token allowed to write the buckets.
        org: the InfluxDB organisation (not the IoT Suitcase org, which picks the bucket).
        bucket: the bucket template; ``{org}`` becomes the IoT Suitcase org slug with '-' -> '_'.
        precision: timestamp precision written: ns, us, ms or s.
        timeout: seconds to wait for an answer before the write counts as failed.
        required: whether the gateway waits for this sink before acking.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        org: str = "suitcase",
        bucket: str = DEFAULT_DATABASE,
        precision: str = "ns",
        timeout: float = 10.0,
        required: bool = True,
    ) -> None:
        if precision not in _PRECISIONS:
            raise ConfigError(f"influxdb sink: precision {precision!r} is unknown: use one of {_PRECISIONS}")
        self.url = url
        self.token = token
        self.org = org
        self.bucket = bucket
        self.precision = precision
        self.timeout = timeout
        self.required = required
        self.name = f"influxdb:{url}"
        self._client: Any = None
        self._write: Any = None

    def open(self) -> None:
        """Create the client (no request is made until the first write)."""
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        # retries=False: the gateway owns retrying (backoff, metrics, no ack until written).
        self._client = InfluxDBClient(
            url=self.url, token=self.token, org=self.org, timeout=int(self.timeout * 1000), retries=False
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, batch: Sequence[Record]) -> None:
        """Write ``batch``, one request per bucket.

        Raises:
            SinkRefused: the server refused the points' content (HTTP 400, 413, 422).
            SinkError: the server is unreachable, timed out or answered otherwise.
        """
        if self._write is None:
            raise SinkError(f"sink {self.name} is not open: call open() first")
        from influxdb_client.rest import ApiException

        for org, records in group_by_org(batch).items():
            bucket = database_name(self.bucket, org)
            body = encode_lines(records, self.precision)
            try:
                self._write.write(bucket=bucket, org=self.org, record=body, write_precision=self.precision)
            except ApiException as exc:
                hint = {
                    401: "check the token",
                    403: "give the token write access to the bucket",
                    404: f"create bucket {bucket} (gateway/sinks/README.md)",
                }.get(exc.status or 0, "the gateway retries")
                refused = (exc.status or 0) in REFUSED_STATUSES
                if refused:
                    hint = "the points' content is refused: the gateway dead-letters them"
                raise (SinkRefused if refused else SinkError)(
                    f"InfluxDB at {self.url} answered HTTP {exc.status} to a write of {len(records)} "
                    f"points to bucket {bucket}: {str(exc.body)[:300]}: {hint}"
                ) from exc
            except Exception as exc:  # urllib3's connection errors and timeouts
                raise SinkError(
                    f"cannot write to InfluxDB at {self.url} ({type(exc).__name__}: {exc}): "
                    "check that it runs and the URL is right; the gateway retries"
                ) from exc

    def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._write = None


def from_url(url: str) -> InfluxDB2Sink:
    """Create the sink of an ``influxdb://host:port?...`` URL (options in the module docstring)."""
    u = parse_sink_url(url)
    tls = u.take_bool("tls", False)
    sink = InfluxDB2Sink(
        f"{'https' if tls else 'http'}://{u.host}:{u.port or 8086}",
        token=u.take("token", ""),
        org=u.take("org", "suitcase"),
        bucket=u.take("bucket", DEFAULT_DATABASE),
        precision=u.take("precision", "ns"),
        timeout=u.take_float("timeout", 10.0),
        required=u.take_bool("required", True),
    )
    u.done()
    return sink
