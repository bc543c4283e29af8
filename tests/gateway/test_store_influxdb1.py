"""Tests of the store's read interface on both backends: the embedded SQLite store and InfluxDB 1.x.

The same data is written the way the gateway writes it (SQLite: ``SqliteStore.write``; InfluxDB:
the real ``influxdb1`` sink into a real influxd) and every read of ``gateway.store.base.Reader``
is checked against answers computed from the records themselves.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.influx.http import HttpClient
from gateway.store import DeadLetter, DeviceSeen, SqliteStore, StoreError, open_reader, series_of
from gateway.store.influxdb1 import InfluxQLReader
from kits.errors import ConfigError
from kits.wire import Record
from tests.services.influxdb import InfluxD
from tests.stores import InfluxStore

T0 = 1_750_000_000.0 - (1_750_000_000.0 % 3600)
KEYS = [("aarhus", "pi-1"), ("city-x", "pi-2"), ("city-x", "pi-1")]  # pi-1 in two orgs: never mixed


def data() -> list[Record]:
    return [
        Record(org, dev, sensor, q, round(20 + i * 0.37 + len(q) + len(org), 3), T0 + i * 20 + len(org))
        for org, dev in KEYS
        for sensor in ("bme280", "scd40")
        for q in ("temperature", "humidity")
        for i in range(360)
    ]


LETTERS = [
    DeadLetter(T0 + 5, "suitcase/v1/aarhus/pi-9/telemetry", b"\x00\xffnot senml", "bad_payload", "not JSON"),
    DeadLetter(T0 + 5, "suitcase/v1/aarhus/pi-8/telemetry", b"[]", "empty_pack", 'empty "pack"'),
    DeadLetter(T0 + 9, "suitcase/v1/x/y/z", b"{}", "bad_topic", "unknown channel z"),
]


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The store written as the gateway writes it and read as the server reads it."""
    if request.param == "influxdb":
        influxd: InfluxD = request.getfixturevalue("influxd")
        with InfluxStore(influxd.sink_url) as handle:
            yield handle
    else:
        with SqliteStore(tmp_path / "s.db") as handle:
            yield handle


def _expected_windows(
    records: list[Record], every: float
) -> list[tuple[float, str, str, int, float, float, float]]:
    groups: dict[tuple[float, str, str], list[float]] = {}
    for r in records:
        groups.setdefault((math.floor(r.time / every) * every, r.sensor, r.quantity), []).append(r.value)
    return sorted(
        (k[0], k[1], k[2], len(v), math.fsum(v) / len(v), min(v), max(v)) for k, v in groups.items()
    )


def test_every_read_answers_what_was_written(store: Any) -> None:
    """Test that readings, latest, devices, windows, dead letters and health answer from the records,
    keyed by (org, device): the same device id in two orgs is two devices."""
    records = data()
    store.write(records[: len(records) // 2])
    store.write(records[len(records) // 2 :])
    store.write(records[:100])  # a redelivery: stored once
    store.write_dead_letters(LETTERS)
    store.health()

    def of(org: str, dev: str) -> list[Record]:
        return sorted(
            (r for r in records if (r.org, r.device) == (org, dev)),
            key=lambda r: (r.time, r.sensor, r.quantity),
        )

    for org, dev in KEYS:
        mine = of(org, dev)
        assert store.readings(org, dev, T0 + 100, T0 + 2000) == [
            r for r in mine if T0 + 100 <= r.time < T0 + 2000
        ]
        assert store.readings(org, dev, T0, T0 + 9999, sensor="scd40", quantity="humidity") == [
            r for r in mine if r.sensor == "scd40" and r.quantity == "humidity"
        ]
        assert store.readings(org, dev, T0, T0 + 9999, limit=7) == mine[:7]
        for every in (60.0, 600.0, 3600.0):
            got = store.windows(org, dev, T0, T0 + 7200, every, quantity="temperature")
            want = _expected_windows([r for r in mine if r.quantity == "temperature"], every)
            assert [(w.start, w.sensor, w.quantity, w.count, w.min, w.max) for w in got] == [
                (s, sn, q, n, lo, hi) for s, sn, q, n, _, lo, hi in want
            ]
            assert all(
                abs(w.mean - m) < 1e-9 and (w.org, w.device) == (org, dev)
                for w, (*_, m, _, _) in zip(got, want, strict=True)
            )
    assert store.readings("aarhus", "pi-2", T0, T0 + 9999) == []  # pi-2 is city-x's
    assert store.readings("nobody", "pi-1", T0, T0 + 9999) == []

    newest: dict[tuple[str, str, str, str], Record] = {}
    for r in records:
        key = (r.org, r.device, r.sensor, r.quantity)
        if key not in newest or r.time > newest[key].time:
            newest[key] = r
    by_device = sorted(newest.values(), key=lambda r: (r.device, r.sensor, r.quantity))
    assert sorted(store.latest(), key=lambda r: (r.org, r.device, r.sensor, r.quantity)) == sorted(
        by_device, key=lambda r: (r.org, r.device, r.sensor, r.quantity)
    )
    assert store.latest([("city-x", "pi-1")]) == [
        r for r in by_device if (r.org, r.device) == ("city-x", "pi-1")
    ]
    assert store.latest([]) == []
    assert store.latest([("aarhus", "nobody")]) == []
    with pytest.raises(TypeError, match="org, device"):
        store.latest("pi-1")

    seen = [
        DeviceSeen(org, dev, of(org, dev)[0].time, of(org, dev)[-1].time, len(of(org, dev)))
        for org, dev in KEYS
    ]
    got_seen = store.devices()
    assert [(d.org, d.device, d.first_seen, d.last_seen) for d in got_seen] == sorted(
        (d.org, d.device, d.first_seen, d.last_seen) for d in seen
    )
    # SQLite counts distinct readings; the InfluxDB sink counts what it wrote (a redelivery again).
    assert all(d.readings >= len(of(d.org, d.device)) for d in got_seen)
    assert [d.device for d in store.devices("city-x")] == ["pi-1", "pi-2"]
    page = store.devices(keys=[("city-x", "pi-1"), ("aarhus", "nobody"), ("aarhus", "pi-1")])
    assert [(d.org, d.device) for d in page] == [("aarhus", "pi-1"), ("city-x", "pi-1")]
    assert page == [d for d in got_seen if (d.org, d.device) in {("aarhus", "pi-1"), ("city-x", "pi-1")}]
    assert store.devices(keys=[]) == []

    assert store.count_dead_letters() == 3
    got_letters = store.dead_letters()
    assert got_letters[0].topic == LETTERS[2].topic  # newest first; the two of one instant both kept
    assert {(d.topic, d.payload, d.code, d.reason) for d in got_letters} == {
        (d.topic, d.payload, d.code, d.reason) for d in LETTERS
    }
    assert got_letters[0].received_at == pytest.approx(T0 + 9, abs=1e-5)
    assert len(store.dead_letters(limit=1)) == 1

    # Bounded to a window: the series whose newest reading is older than `since` are left out.
    newer = Record("city-x", "pi-1", "scd40", "humidity", 1.5, T0 + 99_999)
    store.write([newer])
    newest[newer.org, newer.device, newer.sensor, newer.quantity] = newer
    every = sorted(newest.values(), key=lambda r: (r.device, r.sensor, r.quantity))
    assert store.latest([("city-x", "pi-1"), ("aarhus", "pi-2")], since=T0 + 99_999) == [newer]
    assert store.latest(since=T0 + 8000) == [newer]  # the others end at T0 + 7186
    assert sorted(store.latest(since=T0), key=lambda r: (r.org, r.device, r.sensor, r.quantity)) == sorted(
        every, key=lambda r: (r.org, r.device, r.sensor, r.quantity)
    )
    assert store.latest(since=T0 + 100_000) == []


def test_an_org_that_never_sent_a_reading_hides_no_other_orgs_readings(store: Any) -> None:
    """Test that latest readings of devices in several orgs, the first of which has no data at all
    (on InfluxDB: no database, where influxd 1.x runs no statement after the failed one), answer
    the other orgs' readings."""
    store.write(data())
    keys = [("aaa-silent", "pi-1"), *KEYS, ("zzz-silent", "pi-1")]
    expected = sorted(
        {(r.org, r.device, r.sensor, r.quantity): r for r in sorted(data(), key=lambda r: r.time)}.values(),
        key=lambda r: (r.device, r.sensor, r.quantity, r.org),
    )
    got = sorted(store.latest(keys), key=lambda r: (r.device, r.sensor, r.quantity, r.org))
    assert got == expected
    assert store.latest([("aaa-silent", "pi-1"), ("zzz-silent", "pi-1")]) == []


class _FirstStatementOnly(HttpClient):
    """influxd behind a server that runs only the first of several statements (InfluxDB 3's v1
    API, influxdata/influxdb#24771, which cannot run here): a stand-in for its documented gap."""

    def request(
        self, method: str, path: str, params: Mapping[str, str], *args: Any, **kwargs: Any
    ) -> tuple[int, bytes]:
        if path == "/query":
            params = {**params, "q": params["q"].split(";")[0]}
        return super().request(method, path, params, *args, **kwargs)


@pytest.mark.influxdb
def test_a_server_that_runs_one_statement_per_request_answers_every_read(influxd: InfluxD) -> None:
    """Test that where the server runs only the first statement of a request, the reader asks the
    rest one by one: latest readings of devices in several orgs (a statement each) and windows
    answer as from influxd itself."""
    with InfluxStore(influxd.sink_url) as whole:
        whole.write(data())
        one_by_one = InfluxQLReader(_FirstStatementOnly("127.0.0.1", influxd.port, error=StoreError))
        keys = [("aaa-silent", "pi-1"), *KEYS]
        assert len({org for org, _ in keys}) == 3  # three statements in one request
        assert one_by_one.latest(keys) == whole.latest(keys) != []
        assert one_by_one.devices() == whole.devices()
        assert one_by_one.windows("city-x", "pi-1", T0, T0 + 7200, 600.0) == whole.windows(
            "city-x", "pi-1", T0, T0 + 7200, 600.0
        )


def test_influxdb_reader_opens_from_the_sinks_urls(influxd: InfluxD) -> None:
    """Test that the 1.x sink URL and the 2.x sink URL (token, bucket) open the InfluxQL reader, and that
    a misspelt option is refused naming the right ones."""
    one = open_reader(f"{influxd.sink_url}?database=x_{{org}}&required=false&timeout=5")
    two = open_reader(f"influxdb://{influxd.host}:{influxd.port}?org=o&token=t&bucket=x_{{org}}&precision=ms")
    assert isinstance(one, InfluxQLReader) and isinstance(two, InfluxQLReader)
    assert one.database == two.database == "x_{org}"
    assert two.http._headers["Authorization"] == "Token t"
    with InfluxStore(f"{influxd.sink_url}?database=x_{{org}}") as store:
        store.write(data()[:10])
    assert two.readings("aarhus", "pi-1", T0, T0 + 9999) == data()[:10]
    one.close()
    two.close()
    with InfluxStore(f"{influxd.sink_url}?database=one_for_all") as shared:  # no {org}: one database
        shared.write(data())
        assert {(r.org, r.device) for r in shared.latest()} == set(KEYS)
        mine = [r for r in data() if (r.org, r.device) == ("city-x", "pi-1") and r.time < T0 + 200]
        assert shared.readings("city-x", "pi-1", T0, T0 + 200) == sorted(
            mine, key=lambda r: (r.time, r.sensor, r.quantity)
        )
        assert sum(w.count for w in shared.windows("aarhus", "pi-1", T0, T0 + 7200, 600.0)) == 4 * 360
        assert {r.org for r in shared.latest([("aarhus", "pi-1")])} == {"aarhus"}
    with pytest.raises(ConfigError, match=r"databse.*takes.*database"):
        open_reader(f"{influxd.sink_url}?databse=x")


def test_influxdb_reader_refuses_a_server_it_cannot_use(
    influxd: InfluxD, influxd_factory: Callable[..., InfluxD]
) -> None:
    """Test that an unreachable InfluxDB, a missing meta database and wrong credentials raise
    StoreError naming the setting and the fix, and that a store going down fails reads (never an
    empty answer)."""
    from suitcase.broker import free_port

    down = open_reader(f"influxdb1://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(StoreError, match=r"cannot reach InfluxDB at http://127\.0\.0\.1:.*check that it"):
        down.health()
    with pytest.raises(StoreError, match="cannot reach"):
        down.readings("aarhus", "pi-1", T0, T0 + 10)

    empty = open_reader(influxd.sink_url)
    with pytest.raises(StoreError, match=r"no database 'suitcase'.*meta=.*CREATE DATABASE"):
        empty.health()
    empty.close()

    private = influxd_factory()
    with InfluxStore(private.sink_url) as store:
        store.write(data()[:10])
        assert len(store.readings("aarhus", "pi-1", 0, 2e9)) == 10
        private.kill()
        with pytest.raises(StoreError, match=r"cannot reach|dropped the connection"):
            store.readings("aarhus", "pi-1", 0, 2e9)
        with pytest.raises(StoreError):
            store.devices()
        with pytest.raises(StoreError):
            store.latest()


def test_influxdb_reader_refuses_wrong_credentials(influxd_factory: Callable[..., InfluxD]) -> None:
    """Test that InfluxDB with auth on answers a wrong password with a StoreError naming the URL options."""
    secured = influxd_factory(auth=True)
    secured.query("CREATE USER admin WITH PASSWORD 'right' WITH ALL PRIVILEGES", auth=("admin", "right"))
    wrong = open_reader(f"{secured.sink_url}?username=admin&password=wrong")
    with pytest.raises(StoreError, match=r"refused the credentials.*username= and password="):
        wrong.health()
    right = open_reader(f"{secured.sink_url}?username=admin&password=right")
    with pytest.raises(StoreError, match="no database 'suitcase'"):
        right.health()  # credentials accepted: only the database is missing


def test_influxdb_windows_read_the_rollups_and_outlive_the_raw_readings(
    influxd: InfluxD, tmp_path: Path
) -> None:
    """Test that the reader's hourly windows of three days, on a database with the rollups of
    `suitcase gateway retention apply`, equal the embedded store's, and stay drawn once the raw
    readings' shards are dropped (what their retention does)."""
    import time

    from gateway.store.influxdb1_rollups import FRESH_S
    from gateway.store.influxdb1_rollups import from_url as rollups_of
    from gateway.store.retention import parse_retention

    now = time.time()
    day = 86_400.0
    records = [
        Record("o", "pi", "s", "temperature", round(20 + (i % 37) * 0.1, 2), now - 3 * day + i * 150)
        for i in range(int(3 * day / 150))
    ]
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), now)
    with InfluxStore(influxd.sink_url) as store:
        store.write(records)
    tool.backfill("suitcase_o", now - 4 * day, now)
    reader = open_reader(influxd.sink_url)
    start = now - 3 * day + 3600 - now % 3600  # whole hours: both stores read their hour rollups
    before = reader.windows("o", "pi", start, now, 3600.0)
    with SqliteStore(tmp_path / "s.db") as lite:
        lite.write(records)
        want = lite.windows("o", "pi", start, now, 3600.0)
    assert [(w.start, w.count, w.min, w.max) for w in before] == [
        (w.start, w.count, w.min, w.max) for w in want
    ]
    assert all(abs(a.mean - b.mean) < 1e-9 for a, b in zip(before, want, strict=True))
    shards = [
        r[0] for s in influxd.query("SHOW SHARDS") for r in s["values"] if r[1:3] == ["suitcase_o", "autogen"]
    ]
    for shard in shards:
        influxd.query(f"DROP SHARD {shard}")
    assert reader.readings("o", "pi", start, now - FRESH_S - 3600) == []  # the raw readings are gone
    after = reader.windows("o", "pi", start, now, 3600.0)
    old = now - FRESH_S - 3600
    assert [w for w in after if w.start < old] == [w for w in before if w.start < old] != []
    reader.close()


def _reference_windows(answers: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """Each window's parts from every statement added up, ordered by (start, sensor, quantity)."""
    parts: dict[tuple[float, str, str], list[float]] = {}
    for answer in answers:
        for s in answer:
            for t, n, total, low, high in s["values"]:
                if not n:
                    continue
                key = (t / 1e9, s["tags"]["sensor"], s["name"])
                if key in parts:
                    old = parts[key]
                    parts[key] = [old[0] + n, old[1] + total, min(old[2], low), max(old[3], high)]
                else:
                    parts[key] = [n, total, low, high]
    return [
        ("o", "d", sensor, name, start, n, total / n, low, high)
        for (start, sensor, name), (n, total, low, high) in sorted(parts.items())
    ]


def _in(
    epoch: str,
    answers: list[list[dict[str, Any]]],
    each_series_rows: Callable[[list[list[Any]]], list[list[Any]]] | None = None,
) -> list[list[dict[str, Any]]]:
    """A fresh copy of ``answers`` (times in ns) with times in ``epoch`` units, as influxd answers,
    each series' rows replaced by what ``each_series_rows`` makes of them, as the reader's query."""
    out = copy.deepcopy(answers)
    for answer in out:
        for s in answer:
            if epoch == "s":
                for row in s["values"]:
                    row[0] //= 1_000_000_000
            if each_series_rows is not None:
                s["values"] = each_series_rows(s["values"])
    return out


def test_influxdb_windows_add_up_the_parts_of_a_window_from_every_statement() -> None:
    """Test that the reader's windows are each window's parts from all of its statements' answers
    added up, ordered by (start, sensor, quantity), whatever the answers hold: empty answers, a
    window only in a smaller answer, a zero count, rows not in time order, a series in one answer
    only. The answers are made here as influxd's JSON would parse (a fixture, no influxd: the
    cases a real server gives only at rare instants, e.g. where the tiers read meet)."""
    rng = random.Random(12)
    reader = InfluxQLReader(HttpClient("127.0.0.1", 1, what="InfluxDB", error=StoreError), database="x")
    reader._tiers = lambda db: (60,)  # type: ignore[method-assign]
    for case in range(300):
        answers: list[list[dict[str, Any]]] = []
        statements = rng.randint(1, 3)
        # Half the cases as the tiers read: each statement a span of its own, the spans meeting
        # at a window both may hold; the others anywhere.
        edges = sorted(rng.sample(range(1, 39), statements - 1))
        spans = list(zip([0, *edges], [*edges, 39], strict=True)) if case % 2 else [(0, 39)] * statements
        for lo, hi in spans:
            answer = []
            for sensor in rng.sample(["a", "b", "c"], rng.randint(0, 3)):
                for name in rng.sample(["co2", "humidity", "temperature"], rng.randint(1, 3)):
                    times = sorted(rng.sample(range(lo, hi + 1), min(hi + 1 - lo, rng.randint(0, 12))))
                    if case % 5 == 0:
                        rng.shuffle(times)  # not in time order
                    rows = [
                        [
                            t * 60_000_000_000,
                            n,
                            n * rng.uniform(-5, 30),
                            rng.randint(-5, 10),
                            rng.uniform(10, 30),
                        ]
                        for t in times
                        for n in [rng.choice([0, 1, 2, 60])]
                    ]
                    answer.append({"name": name, "tags": {"sensor": sensor}, "values": rows})
            answers.append(answer)
        expected = _reference_windows(answers)
        # A fresh copy per read: the reader adds the parts of a window into the answer's rows.
        reader._query = lambda statements, answers=answers, epoch="ns", each_series_rows=None, **_: _in(  # type: ignore[method-assign]
            epoch, answers, each_series_rows
        )
        got = reader.windows("o", "d", 0, 2400, 60)
        assert [w[:6] for w in got] == [e[:6] for e in expected], case
        assert all(
            math.isclose(a, b)
            for w, e in zip(got, expected, strict=True)
            for a, b in zip(w[6:], e[6:], strict=True)
        ), case
        assert all(type(w.min) is float and type(w.count) is int for w in got)
        assert reader.series_windows("o", "d", 0, 2400, 60) == series_of(got), case
        # A width of no whole seconds asks for times in ns (the made-up answers stay the same).
        assert reader.windows("o", "d", 0, 2400, 7.5) == got, case


def test_influxdb_rows_that_are_no_windows_are_the_stores_error() -> None:
    """Test that an answer whose rows are no (time, count, sum) windows (another program's
    measurements under the same names) is a StoreError naming the server, not a crash."""
    reader = InfluxQLReader(HttpClient("127.0.0.1", 1, what="InfluxDB", error=StoreError), database="x")
    reader._tiers = lambda db: (60,)  # type: ignore[method-assign]
    for rows in (
        [[None, 1, 2.0]],
        [["2026-01-01T00:00:00Z", 1, 2.0]],
        [[60, 1]],
        [[30, "many", 2.0], [90, 1, 2.0]],
    ):
        answers = [[{"name": "co2", "tags": {"sensor": "a"}, "values": rows}]]
        reader._query = lambda statements, answers=answers, epoch="ns", each_series_rows=None, **_: _in(  # type: ignore[method-assign]
            "ns", answers, each_series_rows
        )
        with pytest.raises(StoreError, match=r"InfluxDB at http://127.0.0.1:1 answered rows that are no"):
            reader.series_windows("o", "d", 0, 2400, 120)


_points = st.lists(
    st.tuples(
        st.integers(0, 40),  # which point of the tier
        st.integers(0, 3),  # its count (0: a point without readings)
        st.integers(-1000, 1000),
        st.integers(0, 50),
        st.integers(0, 50),
    ),
    max_size=60,
    unique_by=lambda p: p[0],
)


@settings(max_examples=300, deadline=None)
@given(
    _points,
    st.sampled_from([60, 300]),
    st.integers(1, 5),
    st.booleans(),
    st.booleans(),
    st.integers(0, 7),
)
def test_rollup_points_add_up_to_the_windows_they_fall_in(
    points: list[tuple[int, int, int, int, int]],
    width: int,
    k: int,
    shuffled: bool,
    means_only: bool,
    skew: int,
) -> None:
    """Test that a tier's points read as they are become one row per window of k points, each
    their sum (counts and sums added, min of mins, max of maxes), whichever way they come: in
    time order with every point or with points missing, without readings, out of order, at
    ragged ends of the range; with all four aggregates or counts and sums only."""
    from gateway.store.influxdb1 import _in_windows

    base = 1_790_000_000 - 1_790_000_000 % (width * 60) + skew * width
    rows = [[base + i * width, n, s, s - low, s + high] for i, n, s, low, high in sorted(points)]
    if means_only:
        rows = [row[:3] for row in rows]
    if shuffled:
        random.Random(len(rows)).shuffle(rows)
    step = width * k
    windows: dict[int, list[int]] = {}
    for t, n, total, *bounds in rows:
        if n:
            into = windows.setdefault(t - t % step, [0, 0, *bounds])
            into[0], into[1] = into[0] + n, into[1] + total
            into[2:] = [min(into[2], bounds[0]), max(into[3], bounds[1])] if bounds else []
    want = [[t, *windows[t]] for t in sorted(windows)]
    # Points each on a window's start are the windows as they are (the reader sorts them and
    # leaves out those without readings).
    aligned = all(row[0] % step == 0 for row in rows)
    got = _in_windows(copy.deepcopy(rows), step)
    assert got == (rows if aligned else want)
    # What it sums is what the windows hold: every point with readings once, in its window.
    assert sum(row[1] for row in got) == sum(row[1] for row in rows)
    assert all(row[0] % step == 0 for row in got) and len({row[0] for row in got}) == len(got)
