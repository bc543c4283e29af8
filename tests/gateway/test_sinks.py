"""Tests of gateway/sinks/: the registry, line protocol, and each sink against its real server."""

from __future__ import annotations

import math
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.influx.lines import database_name, encode_lines, timestamp
from gateway.sinks import SINKS, Sink, SinkError, open_sink
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
from tests.waiting import wait_until


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


def test_sqlite_sinks_of_one_file_refresh_its_rollups_once_per_period(tmp_path: Path) -> None:
    """Test that of two sqlite sinks writing one file (two gateways), each due by its own period,
    the second skips the rollup refresh the first did within the period, and its minutes go into
    the next refresh (of either)."""
    now, ticks = [NOW], [0.0]
    a, b = (
        SqliteSink(
            SqliteStore(tmp_path / "s.db"), rollup_every_s=5, clock=lambda: now[0], monotonic=lambda: ticks[0]
        )
        for _ in "ab"
    )
    first, second = readings("aarhus"), readings("city-x")

    def marked() -> set[str]:
        with sqlite3.connect(tmp_path / "s.db") as conn:
            return {
                org
                for (org,) in conn.execute(
                    "SELECT DISTINCT s.org FROM rollup_dirty AS d JOIN series AS s ON s.id = d.series_id"
                )
            }

    a.write(first)
    assert marked() == {"aarhus"}  # neither sink's period is up
    ticks[0], now[0] = 5.0, NOW + 5  # both sinks' periods are up
    a.write(first[:1])
    assert marked() == set()  # a refreshed
    now[0] += 4
    b.write(second)
    assert marked() == {"city-x"}  # b skipped: a refreshed 4 s ago
    now[0] += 1
    b.write(second[:1])  # b's own period is not up yet: nothing happens
    assert marked() == {"city-x"}
    ticks[0] = 10.0
    b.write(second[:1])
    assert marked() == set()  # b's refresh has a's minutes and its own
    for sink in (a, b):
        assert sink.store is not None
        windows = sink.store.windows("city-x", "pi-0", NOW - 2000, NOW, 60)
        assert sum(w.count for w in windows) == len(second) // 2
        sink.store.close()


@pytest.fixture
def process_sink(tmp_path: Path) -> Iterator[SqliteSink]:
    sink = open_sink(f"sqlite:///{tmp_path}/p.db")
    assert isinstance(sink, SqliteSink) and sink.process
    sink.open()
    yield sink
    sink.close()


def test_sqlite_sink_from_a_url_writes_from_a_child_process_bit_for_bit(
    tmp_path: Path, process_sink: SqliteSink
) -> None:
    """Test that the writer child lands every reading with the very doubles sent, last of a key winning."""
    pid = process_sink._writer.pid if process_sink._writer else None
    assert pid is not None and pid != os.getpid()
    odd = [NOW - 0.1, NOW + 1 / 3, 1_700_000_000.000_000_1, NOW - 999.987654321]
    batch = [Record("aarhus", "pi-x", "scd40", "co2", 400.0 + i / 7, t) for i, t in enumerate(odd)]
    batch.append(Record("aarhus", "pi-x", "scd40", "co2", 999.5, odd[0]))  # same key: this one wins
    process_sink.write(batch)
    with SqliteStore(tmp_path / "p.db") as store:
        got = store.readings("aarhus", "pi-x", 0, 2e9)
    assert sorted((r.time, r.value) for r in got) == sorted(
        [(t, 400.0 + i / 7) for i, t in enumerate(odd) if i] + [(odd[0], 999.5)]
    )


def test_sqlite_sink_refuses_a_bad_batch_from_its_child_and_writes_on(
    tmp_path: Path, process_sink: SqliteSink
) -> None:
    """Test that a NaN refused by the store in the child is a SinkError naming it, and the child lives on."""
    bad = [*readings(), Record("aarhus", "pi-0", "bme280", "pressure", math.nan, NOW)]
    with pytest.raises(SinkError, match="only finite numbers"):
        process_sink.write(bad)
    process_sink.write(readings())
    with SqliteStore(tmp_path / "p.db") as store:
        assert store.count_readings() == len(readings())


def test_sqlite_sink_restarts_a_killed_writer_and_loses_nothing(
    tmp_path: Path, process_sink: SqliteSink
) -> None:
    """Test that after kill -9 of the writer child, the next write starts a new one and lands.

    (Killed in the middle of a write, that write raises SinkError and the gateway retries it.)
    """
    writer = process_sink._writer
    assert writer is not None
    first = writer.pid
    assert first is not None
    process_sink.write(readings(times=3))
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: writer.pid is None, what="the killed writer reaped")
    process_sink.write(readings(times=6))  # the batch a gateway would retry after a failure
    assert writer.pid not in (None, first)
    with SqliteStore(tmp_path / "p.db") as store:
        assert store.count_readings() == len(readings(times=6))
    with sqlite3.connect(tmp_path / "p.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_sqlite_sink_writer_outlives_ctrl_c_and_sigterm_to_its_group(
    tmp_path: Path, process_sink: SqliteSink
) -> None:
    """Test that SIGINT and SIGTERM (a terminal's Ctrl-C, systemd's stop) leave the writer to finish.

    The gateway, stopping, writes its last batch and then closes the writer itself.
    """
    writer = process_sink._writer
    assert writer is not None and writer.pid is not None
    pid = writer.pid
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    process_sink.write(readings())
    assert writer.pid == pid
    process_sink.close()
    assert writer.pid is None
    with SqliteStore(tmp_path / "p.db") as store:
        assert store.count_readings() == len(readings())


def test_sqlite_sink_child_that_cannot_open_the_store_says_why(tmp_path: Path) -> None:
    """Test that a store the child cannot open fails open() with the store's own advice."""
    (tmp_path / "not-a-db").write_text("x" * 5000)
    sink = open_sink(f"sqlite:///{tmp_path}/not-a-db")
    with pytest.raises(SinkError, match=r"not-a-db.*could not open"):
        sink.open()
    sink.close()
    with pytest.raises(ConfigError, match=r"proces.*takes.*process"):
        open_sink(f"sqlite:///{tmp_path}/x.db?proces=false")
    in_process = open_sink(f"sqlite:///{tmp_path}/x.db?process=false")
    assert isinstance(in_process, SqliteSink) and not in_process.process
    with pytest.raises(SinkError, match="pass url="):
        SqliteSink(SqliteStore(tmp_path / "y.db"), process=True)


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
