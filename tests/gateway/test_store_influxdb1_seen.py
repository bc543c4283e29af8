"""Tests of gateway/store/influxdb1_seen.py: devices seen read from the sinks' log of changes,
against a real influxd, with two gateways writing and two server replicas reading."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.influx.lines import SEEN_LOG_POLICY
from gateway.sinks import SinkError
from gateway.sinks.influxdb1 import InfluxDB1Sink
from gateway.store import DeviceSeen
from gateway.store.influxdb1 import InfluxQLReader
from gateway.store.influxdb1 import from_url as reader_of
from kits.wire import Record
from suitcase.broker import free_port
from tests.services.influxdb import InfluxD

pytestmark = pytest.mark.influxdb

T0 = 1_750_000_000.0


class Replica:
    """A server replica's reader on an injected wall clock (real time plus ``ahead``), noting
    whether each devices() read every device's point or only the log's changes."""

    def __init__(self, url: str) -> None:
        self.ahead = 0.0
        self.reader: InfluxQLReader = reader_of(url)
        self.reader.seen.wall = lambda: time.time() + self.ahead
        self.reads: list[str] = []
        query = self.reader.seen.query

        def noting(statements: list[str]) -> Any:
            self.reads += ["log" if "devices_seen_log" in s else "full" for s in statements]
            return query(statements)

        self.reader.seen.query = noting

    def devices(self, org: str | None = None) -> list[DeviceSeen]:
        self.reads.clear()
        return self.reader.devices(org)


def _sink(server: InfluxD, **options: Any) -> InfluxDB1Sink:
    sink = InfluxDB1Sink(server.host, server.port, **options)
    sink.open()
    return sink


def _records(org: str, device: str, times: range) -> list[Record]:
    return [Record(org, device, "bme280", "temperature", 20.0 + t % 3, T0 + t) for t in times]


def _truth(server: InfluxD, org: str | None = None) -> list[DeviceSeen]:
    """What a reader that has never read before answers: every device's point, read in full."""
    fresh = reader_of(server.sink_url)
    try:
        return fresh.devices(org)
    finally:
        fresh.close()


def test_replicas_follow_two_gateways_through_the_log(influxd: InfluxD) -> None:
    """Test that two replicas, after one full read each, follow what two gateways write (new devices,
    newer and older readings, a device both write, another org) from the log alone, answering what
    a full read answers, and read every device's point again once ``full_s`` has passed."""
    one, two = _sink(influxd), _sink(influxd)
    one.write(_records("aarhus", "pi-1", range(0, 600, 60)) + _records("odense", "pi-1", range(0, 60, 60)))
    a, b = Replica(influxd.sink_url), Replica(influxd.sink_url)
    assert a.devices("aarhus") == b.devices("aarhus") == _truth(influxd, "aarhus")
    assert a.reads == b.reads == ["full"]
    assert a.devices() == _truth(influxd)

    one.write(_records("aarhus", "pi-1", range(600, 900, 60)))  # newer
    two.write(_records("aarhus", "pi-1", range(-600, 0, 60)) + _records("aarhus", "pi-2", range(0, 60, 60)))
    two.write(_records("odense", "pi-9", range(0, 60, 60)))
    for replica in (a, b):
        got = replica.devices("aarhus")
        assert replica.reads == ["log"]
        assert got == _truth(influxd, "aarhus")
        assert [(d.device, d.first_seen, d.last_seen, d.readings) for d in got] == [
            ("pi-1", T0 - 600, T0 + 840, 25),
            ("pi-2", T0, T0, 1),
        ]
    assert a.devices() == _truth(influxd) and a.reads == ["log"]
    assert {(d.org, d.device) for d in a.devices()} == {
        ("aarhus", "pi-1"),
        ("aarhus", "pi-2"),
        ("odense", "pi-1"),
        ("odense", "pi-9"),
    }
    assert a.devices("aarhus") == b.devices("aarhus") and a.reads == ["log"]  # nothing new: same answer

    a.ahead = a.reader.seen.full_s + 1
    assert a.devices("aarhus") == _truth(influxd, "aarhus") and a.reads == ["full"]
    assert a.devices("aarhus") == _truth(influxd, "aarhus") and a.reads == ["log"]
    for sink in (one, two):
        sink.close()
    for replica in (a, b):
        replica.reader.close()


def test_a_gateway_clock_far_behind_is_seen_at_the_next_full_read(influxd: InfluxD) -> None:
    """Test that a gateway whose clock is two hours behind writes its batches (influxd refuses its
    log points, stamped before the log's hour of retention), and that its changes, missed by the
    log reads, appear at the next full read: the log never delays a change by more than
    ``full_s``."""
    behind = _sink(influxd, wall_ns=lambda: time.time_ns() - 7200 * 10**9)
    behind.write(_records("aarhus", "pi-1", range(0, 60, 60)))
    replica = Replica(influxd.sink_url)
    assert [d.readings for d in replica.devices("aarhus")] == [1]
    behind.write(_records("aarhus", "pi-1", range(60, 120, 60)))
    assert influxd.count("suitcase_aarhus") == 2
    assert [d.readings for d in replica.devices("aarhus")] == [1] and replica.reads == ["log"]
    replica.ahead = replica.reader.seen.full_s
    assert replica.devices("aarhus") == _truth(influxd, "aarhus") and replica.reads == ["full"]
    assert [d.readings for d in replica.devices("aarhus")] == [2]
    behind.close()
    replica.reader.close()


def test_without_the_log_policy_every_read_is_a_full_one(influxd: InfluxD) -> None:
    """Test that a meta database made without the ``seen_log`` retention policy (a gateway told not
    to create databases, or one of a version before the log) still gets every batch's readings and
    devices seen written, and readers read every device's point each time."""
    influxd.query('CREATE DATABASE "suitcase"')
    influxd.query('CREATE DATABASE "suitcase_aarhus"')
    sink = _sink(influxd, create_databases=False)
    replica = Replica(influxd.sink_url)
    sink.write(_records("aarhus", "pi-1", range(0, 120, 60)))
    assert [d.readings for d in replica.devices("aarhus")] == [2] and replica.reads == ["full"]
    sink.write(_records("aarhus", "pi-1", range(120, 180, 60)) + _records("aarhus", "pi-2", range(0, 60, 60)))
    got = replica.devices("aarhus")
    assert replica.reads == ["log", "full"]  # asked the log, found none, read in full
    assert got == _truth(influxd, "aarhus") and [d.readings for d in got] == [3, 1]
    assert SEEN_LOG_POLICY not in {
        r[0] for s in influxd.query('SHOW RETENTION POLICIES ON "suitcase"') for r in s["values"]
    }
    sink.close()
    replica.reader.close()


def test_the_log_is_one_series_per_writer(influxd: InfluxD) -> None:
    """Test that the log of changes holds one series per org and gateway, however many devices, and a
    point per device changed in a batch (what makes a read of the changes cheap)."""
    sink = _sink(influxd)
    sink.write([r for i in range(50) for r in _records("aarhus", f"pi-{i}", range(0, 120, 60))])
    sink.write(_records("aarhus", "pi-7", range(120, 180, 60)))
    series = influxd.query('SHOW SERIES ON "suitcase" FROM "devices_seen_log"')
    assert len(series[0]["values"]) == 1
    points = influxd.query(f'SELECT count("readings") FROM "suitcase"."{SEEN_LOG_POLICY}"."devices_seen_log"')
    assert points[0]["values"][0][1] == 51
    sink.close()


def test_a_restarted_gateway_counts_on_in_its_own_series(influxd: InfluxD) -> None:
    """Test that a gateway restarted under its client id (a new sink, as after a restart) reads its
    devices-seen points back and counts on from them: the same series, readings added, no new
    series per restart; another gateway's points stay apart and the reader sums both."""
    before = _sink(influxd)
    before.name_writer("gw-a")
    before.write(
        _records("aarhus", "pi-1", range(0, 600, 60)) + _records("aarhus", "pi-2", range(0, 120, 60))
    )
    before.close()
    other = _sink(influxd)
    other.name_writer("gw-b")
    other.write(_records("aarhus", "pi-1", range(600, 660, 60)))
    other.close()
    for restart in range(2):
        after = _sink(influxd)
        after.name_writer("gw-a")
        after.write(_records("aarhus", "pi-1", range(900 + restart * 600, 1200 + restart * 600, 60)))
        after.close()
    series = influxd.query('SHOW SERIES ON "suitcase" FROM "devices_seen"')[0]["values"]
    assert sorted(s[0] for s in series) == [
        "devices_seen,device=pi-1,org=aarhus,writer=gw-a",
        "devices_seen,device=pi-1,org=aarhus,writer=gw-b",
        "devices_seen,device=pi-2,org=aarhus,writer=gw-a",
    ]
    seen = {d.device: d for d in _truth(influxd, "aarhus")}
    assert seen["pi-1"].readings == 10 + 1 + 5 + 5
    assert (seen["pi-1"].first_seen, seen["pi-1"].last_seen) == (T0, T0 + 1740)
    assert seen["pi-2"].readings == 2


def test_a_named_gateway_in_a_new_database_starts_at_zero(influxd: InfluxD) -> None:
    """Test that a named writer whose meta database does not exist yet (a fresh InfluxDB, the
    sink not allowed to create it until its first write) starts from nothing."""
    sink = InfluxDB1Sink(influxd.host, influxd.port, meta="fresh_meta")
    sink.name_writer("gw-new")
    sink.write(_records("aarhus", "pi-1", range(0, 120, 60)))
    sink.close()
    fresh = reader_of(f"{influxd.sink_url}?meta=fresh_meta")
    assert [d.readings for d in fresh.devices("aarhus")] == [2]
    fresh.close()


def test_a_named_gateway_that_cannot_read_its_points_back_retries_the_batch() -> None:
    """Test that a named writer whose InfluxDB does not answer fails the batch (the gateway keeps it
    and retries) and reads its points back on the retry, never counting from zero over them."""
    sink = InfluxDB1Sink("127.0.0.1", free_port(), timeout=2.0)
    sink.name_writer("gw-a")
    for _ in range(2):
        with pytest.raises(SinkError):
            sink.write(_records("aarhus", "pi-1", range(0, 60, 60)))
        assert sink._resume and not sink._seen
    sink.close()
