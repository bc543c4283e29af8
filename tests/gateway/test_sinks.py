"""Tests of gateway/sinks/: the registry, line protocol, and each sink against its real server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.sinks import SINKS, Sink, SinkError, open_sink
from gateway.sinks._lines import database_name, encode_lines, timestamp
from gateway.sinks.influxdb import InfluxDB2Sink
from gateway.sinks.influxdb1 import InfluxDB1Sink
from gateway.sinks.sqlite import SqliteSink
from gateway.store import SqliteStore
from kits.errors import ConfigError
from kits.wire import Record
from suitcase.broker import free_port
from tests.gateway.gwtools import NOW
from tests.services.influxdb import InfluxD
from tests.services.victoriametrics import VictoriaMetrics


def readings(org: str = "aarhus", devices: int = 2, times: int = 5) -> list[Record]:
    return [
        Record(org, f"pi-{d}", "bme280", q, 20.0 + t / 10 + d, NOW - 1000 + t)
        for t in range(times)
        for d in range(devices)
        for q in ("temperature", "humidity")
    ]


def test_registry_names_every_sink_and_refuses_unknown_ones(tmp_path: Path) -> None:
    """Test that each registered scheme opens its sink, and a bad scheme or option says what to use."""
    assert set(SINKS) == {"sqlite", "influxdb1", "influxdb"}
    assert isinstance(open_sink(str(tmp_path / "a.db")), SqliteSink)
    assert isinstance(open_sink("influxdb1://h:1?database=x_{org}"), InfluxDB1Sink)
    sink = open_sink("influxdb://h:2?org=o&token=t&precision=ms&required=false")
    assert isinstance(sink, InfluxDB2Sink) and isinstance(sink, Sink)
    assert (sink.url, sink.precision, sink.required) == ("http://h:2", "ms", False)
    with pytest.raises(ConfigError, match="unknown scheme 'kafka'"):
        open_sink("kafka://x")
    with pytest.raises(ConfigError, match=r"databse.*takes.*database"):
        open_sink("influxdb1://h:1?databse=x")


def test_line_protocol_is_the_documented_schema() -> None:
    """Test that a reading becomes measurement=quantity, tags device/org/sensor, float value, its time."""
    rec = Record("city-x", "pi-1", "bme280", "temperature", 21.0, 1_750_000_000.25)
    assert encode_lines([rec]) == (
        b"temperature,device=pi-1,org=city-x,sensor=bme280 value=21.0 1750000000250000000"
    )
    assert encode_lines([rec], "ms").endswith(b" 1750000000250")
    assert timestamp(1_750_000_000.123456, "ns") == 1_750_000_000_123_456_000
    assert database_name("suitcase_{org}", "city-x") == "suitcase_city_x"


def test_sqlite_sink_writes_through_the_store(tmp_path: Path) -> None:
    """Test that the sqlite sink lands a batch in the store once, even written twice."""
    sink = open_sink(f"sqlite:///{tmp_path}/s.db")
    sink.open()
    batch = readings()
    sink.write(batch)
    sink.write(batch)
    sink.close()
    with SqliteStore(tmp_path / "s.db") as store:
        assert store.count_readings() == len(batch)


@pytest.mark.influxdb
def test_influxdb1_sink_creates_per_org_databases_and_overwrites(influxd: InfluxD) -> None:
    """Test that readings land in suitcase_{org} per org, in the schema, exactly once when rewritten."""
    sink = open_sink(influxd.sink_url)
    sink.open()
    batch = readings("aarhus") + readings("city-x", devices=1)
    sink.write(batch)
    sink.write(batch)  # a redelivery overwrites its twin
    sink.close()
    assert influxd.count("suitcase_aarhus") == 20
    assert influxd.count("suitcase_city_x") == 10
    series = influxd.query(
        "SELECT value, device, org, sensor FROM temperature WHERE device = 'pi-1' ORDER BY time",
        "suitcase_aarhus",
    )
    rows = series[0]["values"]
    assert [r[1:] for r in rows[:2]] == [
        [21.0, "pi-1", "aarhus", "bme280"],
        [21.1, "pi-1", "aarhus", "bme280"],
    ]
    assert rows[0][0] == (NOW - 1000) * 1_000_000_000
    tags = influxd.query("SHOW TAG KEYS FROM temperature", "suitcase_aarhus")[0]["values"]
    assert sorted(t[0] for t in tags) == ["device", "org", "sensor"]
    fields = influxd.query("SHOW FIELD KEYS FROM temperature", "suitcase_aarhus")[0]["values"]
    assert fields == [["value", "float"]]


def test_influxdb1_sink_refused_connection_says_so() -> None:
    """Test that a refused connection raises SinkError naming the server and the fix."""
    sink = InfluxDB1Sink("127.0.0.1", free_port(), timeout=2)
    with pytest.raises(SinkError, match=r"cannot reach InfluxDB 1\.x.*check that it runs"):
        sink.write(readings())


class _Answer(BaseHTTPRequestHandler):
    status = 500
    delay = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.delay:
            threading.Event().wait(self.delay)
        write = "/write" in self.path
        body = b'{"error":"internal error (test)"}' if write else b'{"results":[{}]}'
        self.send_response(self.status if write else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bad_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Answer]]]:
    """A local HTTP server standing in for a broken InfluxDB (answers 500 or stalls)."""
    handler = type("Handler", (_Answer,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_influx_sinks_raise_on_http_500_and_timeouts(
    bad_server: tuple[ThreadingHTTPServer, type[_Answer]],
) -> None:
    """Test that HTTP 500 and a stalled server raise SinkError with the status or the timeout."""
    server, handler = bad_server
    port = server.server_address[1]
    v1 = InfluxDB1Sink("127.0.0.1", port, timeout=0.5)
    v2 = InfluxDB2Sink(f"http://127.0.0.1:{port}", token="t", timeout=0.5)
    v2.open()
    with pytest.raises(SinkError, match=r"HTTP 500.*internal error"):
        v1.write(readings())
    with pytest.raises(SinkError, match="HTTP 500"):
        v2.write(readings())
    handler.delay = 1.5
    with pytest.raises(SinkError, match="did not answer within"):
        v1.write(readings())
    with pytest.raises(SinkError, match="cannot write to InfluxDB"):
        v2.write(readings())
    v1.close()
    v2.close()


def test_influxdb2_sink_refused_connection_says_so() -> None:
    """Test that the InfluxDB 2 sink raises SinkError when nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = InfluxDB2Sink(f"http://127.0.0.1:{port}", token="t", timeout=1)
    sink.open()
    with pytest.raises(SinkError, match="check that it runs"):
        sink.write(readings())
    sink.close()


@pytest.mark.victoriametrics
def test_influxdb2_sink_lands_points_in_victoriametrics_once(victoriametrics: VictoriaMetrics) -> None:
    """Test that influxdb-client's writes land every reading once (a rewrite deduplicates), in ms."""
    sink = open_sink(f"influxdb://127.0.0.1:{victoriametrics.port}?org=o&token=t&precision=ms")
    sink.open()
    batch = readings("vm-org", devices=3, times=7)
    sink.write(batch)
    sink.write(batch)
    sink.close()
    match = '{__name__=~"temperature_value|humidity_value", org="vm-org"}'
    series = victoriametrics.wait_samples(len(batch), match)
    assert sum(len(s["values"]) for s in series) == len(batch)
    one = next(
        s
        for s in series
        if s["metric"]["__name__"] == "temperature_value" and s["metric"]["device"] == "pi-2"
    )
    assert {k: v for k, v in one["metric"].items() if k != "db"} == {
        "__name__": "temperature_value",
        "device": "pi-2",
        "org": "vm-org",
        "sensor": "bme280",
    }
    assert one["timestamps"][0] == int((NOW - 1000) * 1000)
    assert one["values"][:2] == [22.0, 22.1]
