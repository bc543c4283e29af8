"""Tests of gateway/store/influxdb2.py, the Flux reader, against RECORDED responses.

No InfluxDB 2 runs on this machine (VictoriaMetrics serves its write API, not Flux), so a local
HTTP server replays InfluxDB 2's answers: the buckets API's JSON and the annotated CSV of
``POST /api/v2/query``, in the shapes InfluxDB 2.7 returns for these Flux scripts. The tests
check both what the reader sends (the Flux) and how it parses the answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.store import StoreError, Window, open_reader
from gateway.store.influxdb2 import FluxReader
from kits.wire import Record

BUCKETS = {
    "links": {"self": "/api/v2/buckets?descending=false&limit=20&offset=0"},
    "buckets": [
        {"id": "b1", "orgID": "o1", "type": "user", "name": "suitcase_aarhus", "retentionRules": []},
        {"id": "b2", "orgID": "o1", "type": "user", "name": "suitcase_city_x", "retentionRules": []},
        {"id": "b3", "orgID": "o1", "type": "system", "name": "_monitoring", "retentionRules": []},
    ],
}

RANGE_CSV = """\
#group,false,false,false,false,false,false,false,false
#datatype,string,long,dateTime:RFC3339,double,string,string,string,string
#default,_result,,,,,,,
,result,table,_time,_value,_measurement,device,org,sensor
,,0,2025-06-15T15:00:00Z,21.5,temperature,pi-1,aarhus,bme280
,,0,2025-06-15T15:00:00Z,40.25,humidity,pi-1,aarhus,bme280
,,0,2025-06-15T15:00:20.5Z,21.625,temperature,pi-1,aarhus,bme280

"""

LATEST_CSV = """\
#group,false,false,true,true,false,false,true,true,true,true,true
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string,string,string
#default,_result,,,,,,,,,,
,result,table,_start,_stop,_time,_value,_field,_measurement,device,org,sensor
,,0,1970-01-01T00:00:00Z,2025-06-16T00:00:00Z,2025-06-15T15:59:40Z,22.0,value,temperature,pi-1,aarhus,bme280

"""

WINDOWS_CSV = """\
#group,false,false,true,true,true,true,true,true,true,false,false,false,false
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,string,string,string,string,string,long,double,double,double
#default,_result,,,,,,,,,,,,
,result,table,_start,_stop,_field,_measurement,device,org,sensor,count,sum,min,max
,,0,2025-06-15T15:00:00Z,2025-06-15T16:00:00Z,value,temperature,pi-1,aarhus,bme280,180,3870.0,20.0,23.0
,,1,2025-06-15T16:00:00Z,2025-06-15T17:00:00Z,value,temperature,pi-1,aarhus,bme280,90,1935.0,21.0,22.0

"""

T = 1_750_000_000.0  # 2025-06-15T15:06:40Z
HOUR = 1_749_999_600.0  # 2025-06-15T15:00:00Z


class Recorded(BaseHTTPRequestHandler):
    """Replays recorded InfluxDB 2 answers; keeps every Flux script it was sent."""

    scripts: list[str]
    answer: str
    status = 200

    def do_GET(self) -> None:
        self._send(200, "application/json", json.dumps(BUCKETS).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.scripts.append(body["query"])
        if self.status != 200:
            self._send(self.status, "application/json", b'{"code":"invalid","message":"compilation failed"}')
        else:
            self._send(200, "text/csv; charset=utf-8", self.answer.encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[FluxReader, type[Recorded]]]:
    handler = type("Handler", (Recorded,), {"scripts": [], "answer": ""})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    reader = open_reader(f"influxdb://127.0.0.1:{httpd.server_address[1]}?org=city&token=t&precision=ms")
    assert isinstance(reader, FluxReader)
    yield reader, handler
    reader.close()
    httpd.shutdown()
    httpd.server_close()


def test_readings_flux_and_parsing(server: tuple[FluxReader, type[Recorded]]) -> None:
    """Test that a range read unions the suitcase buckets, filters the device, and parses the CSV."""
    reader, handler = server
    handler.answer = RANGE_CSV
    got = reader.readings("pi-1", T - 3600, T, sensor="bme280", limit=50)
    assert got == [
        Record("aarhus", "pi-1", "bme280", "temperature", 21.5, HOUR),
        Record("aarhus", "pi-1", "bme280", "humidity", 40.25, HOUR),
        Record("aarhus", "pi-1", "bme280", "temperature", 21.625, HOUR + 20.5),
    ]
    flux = handler.scripts[-1]
    assert 'from(bucket: "suitcase_aarhus"), from(bucket: "suitcase_city_x")' in flux
    assert "_monitoring" not in flux
    assert "range(start: time(v: 1749996400000000000), stop: time(v: 1750000000000000000))" in flux
    assert 'r._field == "value" and r.device == "pi-1" and r.sensor == "bme280"' in flux
    assert "limit(n: 50)" in flux


def test_latest_and_windows(server: tuple[FluxReader, type[Recorded]]) -> None:
    """Test that latest() uses last() and windows() reduces count/sum/min/max per window."""
    reader, handler = server
    handler.answer = LATEST_CSV
    assert reader.latest("pi-1") == [Record("aarhus", "pi-1", "bme280", "temperature", 22.0, HOUR + 3580)]
    assert "|> last()" in handler.scripts[-1]
    handler.answer = WINDOWS_CSV
    assert reader.windows("pi-1", HOUR, HOUR + 7200, 3600, quantity="temperature") == [
        Window("aarhus", "pi-1", "bme280", "temperature", HOUR, 180, 21.5, 20.0, 23.0),
        Window("aarhus", "pi-1", "bme280", "temperature", HOUR + 3600, 90, 21.5, 21.0, 22.0),
    ]
    flux = handler.scripts[-1]
    assert "window(every: 3600000ms)" in flux and 'r._measurement == "temperature"' in flux


def test_flux_error_is_a_store_error(server: tuple[FluxReader, type[Recorded]]) -> None:
    """Test that InfluxDB refusing the query raises StoreError naming the server."""
    reader, handler = server
    handler.status = 400
    with pytest.raises(StoreError, match="Flux query failed"):
        reader.readings("pi-1", T - 60, T)
