"""Tests of gateway/store/sqlite.py: the embedded SQLite time-series store."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import DeadLetter, DeviceSeen, SqliteStore, StoreError
from kits.errors import SuitcaseError
from kits.wire import Record

T0 = 1_700_000_000.0


def rec(
    device: str = "dev-a",
    sensor: str = "bme280",
    quantity: str = "temperature",
    value: float = 21.5,
    time: float = T0,
    org: str = "aarhus",
) -> Record:
    return Record(org, device, sensor, quantity, value, time)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()


def test_round_trip_is_exact(store: SqliteStore) -> None:
    """Test that readings come back exactly as written, times bit for bit, ordered by time."""
    records = [rec(time=T0 + 0.1 * i, value=i / 3) for i in range(50)][::-1]
    store.write(records)
    got = store.readings("aarhus", "dev-a", T0, T0 + 100)
    assert got == sorted(records, key=lambda r: r.time)
    assert store.count_readings() == 50


def test_rewrite_overwrites_and_never_duplicates(store: SqliteStore) -> None:
    """Test that a redelivered reading with a new value overwrites the stored one."""
    store.write([rec(value=1.0)])
    store.write([rec(value=2.0)])
    assert store.readings("aarhus", "dev-a", T0, T0 + 1) == [rec(value=2.0)]
    assert store.count_readings() == 1
    assert store.latest() == [rec(value=2.0)]


def test_last_record_of_a_key_within_a_batch_wins(store: SqliteStore) -> None:
    """Test that when one batch repeats a key, the last record of it is stored."""
    store.write([rec(value=1.0), rec(value=2.0), rec(value=3.0)])
    assert store.readings("aarhus", "dev-a", T0, T0 + 1) == [rec(value=3.0)]
    assert store.latest() == [rec(value=3.0)]
    assert store.devices()[0].readings == 1


def test_range_is_half_open(store: SqliteStore) -> None:
    """Test that readings() returns start <= time < end."""
    store.write([rec(time=T0 + i) for i in range(10)])
    got = store.readings("aarhus", "dev-a", T0 + 2, T0 + 5)
    assert [r.time for r in got] == [T0 + 2, T0 + 3, T0 + 4]
    assert store.readings("aarhus", "dev-a", T0 + 10, T0 + 20) == []


def test_range_filters_device_sensor_quantity_and_limit(store: SqliteStore) -> None:
    """Test that readings() keeps only the asked device, sensor and quantity, up to limit."""
    store.write(
        [rec(time=T0 + i) for i in range(5)]
        + [rec(quantity="humidity", value=40.0, time=T0 + i) for i in range(5)]
        + [rec(sensor="scd41", quantity="co2", value=600.0, time=T0 + i) for i in range(5)]
        + [rec(device="dev-b", time=T0 + i) for i in range(5)]
    )
    assert len(store.readings("aarhus", "dev-a", T0, T0 + 10)) == 15
    assert {r.quantity for r in store.readings("aarhus", "dev-a", T0, T0 + 10, sensor="bme280")} == {
        "temperature",
        "humidity",
    }
    assert {r.quantity for r in store.readings("aarhus", "dev-a", T0, T0 + 10, quantity="co2")} == {"co2"}
    assert all(r.device == "dev-b" for r in store.readings("aarhus", "dev-b", T0, T0 + 10))
    limited = store.readings("aarhus", "dev-a", T0, T0 + 10, limit=4)
    assert [r.time for r in limited] == [T0, T0, T0, T0 + 1]


def test_latest_is_newest_per_series_even_when_written_out_of_order(store: SqliteStore) -> None:
    """Test that latest() holds the newest reading per series, whatever the write order."""
    store.write([rec(time=T0 + 10, value=10.0), rec(quantity="humidity", time=T0, value=50.0)])
    store.write([rec(time=T0 + 5, value=5.0)])  # an old backlog arriving late
    store.write([rec(device="dev-b", time=T0 + 1, value=1.0)])
    assert store.latest() == [
        rec(quantity="humidity", time=T0, value=50.0),
        rec(time=T0 + 10, value=10.0),
        rec(device="dev-b", time=T0 + 1, value=1.0),
    ]
    assert store.latest([("aarhus", "dev-b")]) == [rec(device="dev-b", time=T0 + 1, value=1.0)]
    assert store.latest([("aarhus", "nobody")]) == []


def test_devices_summarise_first_last_and_distinct_count(store: SqliteStore) -> None:
    """Test that devices() lists each device with its oldest/newest reading time and distinct count."""
    store.write([rec(time=T0 + 5), rec(time=T0 + 6)])
    store.write([rec(time=T0 + 1), rec(time=T0 + 6, value=0.0)])
    store.write([rec(device="dev-b", org="odense", time=T0)])
    assert store.devices() == [
        DeviceSeen("aarhus", "dev-a", T0 + 1, T0 + 6, 3),
        DeviceSeen("odense", "dev-b", T0, T0, 1),
    ]
    assert store.count_readings() == 4


def test_dead_letters_are_kept_newest_first(store: SqliteStore) -> None:
    """Test that dead letters keep topic, raw payload, code and reason, newest first, up to limit."""
    letters = [
        DeadLetter(T0 + i, f"suitcase/v1/o/d/telemetry{i}", b"\xff\x00" * i, "not_json", f"r{i}")
        for i in range(5)
    ]
    store.write_dead_letters(letters)
    assert store.dead_letters() == letters[::-1]
    assert store.dead_letters(limit=2) == letters[:2:-1][:2] == [letters[4], letters[3]]


def test_empty_writes_are_no_ops(store: SqliteStore) -> None:
    """Test that writing nothing writes nothing and does not fail."""
    store.write([])
    store.write_dead_letters([])
    assert store.count_readings() == 0
    assert store.devices() == [] and store.latest() == [] and store.dead_letters() == []


def test_data_survives_reopening(tmp_path: Path) -> None:
    """Test that what was written is there after the store is closed and opened again."""
    with SqliteStore(tmp_path / "s.db") as s:
        s.write([rec()])
    with SqliteStore(tmp_path / "s.db") as s:
        assert s.readings("aarhus", "dev-a", T0, T0 + 1) == [rec()]
        assert s.devices()[0].readings == 1


def test_file_is_wal(tmp_path: Path) -> None:
    """Test that the store file is in WAL mode (readers never block the writer)."""
    SqliteStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_write_raises_store_error_and_writes_nothing(store: SqliteStore) -> None:
    """Test that a failing write raises a SuitcaseError and rolls the whole batch back."""
    store.write([rec(time=T0)])
    with sqlite3.connect(store.path) as side:  # SQLite itself fails the third record
        side.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON readings WHEN NEW.value = 666 "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    batch = [rec(time=T0 + 1), rec(quantity="humidity", time=T0 + 2), rec(time=T0 + 3, value=666)]
    with pytest.raises(StoreError, match="disk on fire") as info:
        store.write(batch)
    assert isinstance(info.value, SuitcaseError)
    assert store.readings("aarhus", "dev-a", T0, T0 + 10) == [rec(time=T0)]
    assert store.devices()[0].readings == 1
    assert store.latest() == [rec(time=T0)]
    store.write(batch[:2])  # the store still works, and the rolled-back series is usable
    assert store.count_readings() == 3
    assert len(store.latest()) == 2


@pytest.mark.parametrize("value", [float("nan"), float("inf"), cast(float, "21.5")])
def test_non_finite_or_non_numeric_values_are_refused(store: SqliteStore, value: float) -> None:
    """Test that a value that is not a finite number raises StoreError (never silently dropped)."""
    with pytest.raises(StoreError, match="finite"):
        store.write([rec(time=T0), rec(time=T0 + 1, value=value)])
    assert store.count_readings() == 0


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    """Test that a file of another schema version is refused with a StoreError, not misread."""
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(tmp_path / "s.db")


def test_closed_store_raises(tmp_path: Path) -> None:
    """Test that using a closed store raises a StoreError."""
    s = SqliteStore(tmp_path / "s.db")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.count_readings()


def test_concurrent_writers_and_readers(store: SqliteStore) -> None:
    """Test that several threads may write and read at once and every reading lands once."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.write([rec(device=f"dev-{n}", time=T0 + i)])
                store.readings("aarhus", f"dev-{n}", T0, T0 + 100)
                store.devices()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_readings() == 120


_records = st.lists(
    st.builds(
        Record,
        org=st.sampled_from(["aarhus", "odense"]),
        device=st.sampled_from(["dev-a", "dev-b"]),
        sensor=st.sampled_from(["bme280", "scd41"]),
        quantity=st.sampled_from(["temperature", "humidity"]),
        value=st.floats(allow_nan=False, allow_infinity=False),
        time=st.floats(min_value=T0, max_value=T0 + 50).map(lambda t: round(t, 3)),
    ),
    max_size=30,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=_records)
def test_writing_twice_equals_writing_once(
    tmp_path_factory: pytest.TempPathFactory, records: list[Record]
) -> None:
    """Property: writing any list of records twice leaves the store as writing it once."""
    once = SqliteStore(tmp_path_factory.mktemp("once") / "s.db")
    twice = SqliteStore(tmp_path_factory.mktemp("twice") / "s.db")
    try:
        once.write(records)
        twice.write(records)
        twice.write(records)
        for org in ("aarhus", "odense"):
            for device in ("dev-a", "dev-b"):
                assert once.readings(org, device, 0, 2e9) == twice.readings(org, device, 0, 2e9)
        assert once.latest() == twice.latest()
        assert once.devices() == twice.devices()
        distinct = {(r.org, r.device, r.sensor, r.quantity, r.time) for r in records}
        assert once.count_readings() == twice.count_readings() == len(distinct)
    finally:
        once.close()
        twice.close()


def _open_and_close(path: str, barrier: Any, errors: Any) -> None:
    barrier.wait()
    try:
        SqliteStore(path).close()
    except StoreError as exc:
        errors.put(str(exc))


def test_several_processes_creating_the_store_at_once_all_open_it(tmp_path: Path) -> None:
    """Test that gateway workers starting together on a new store file all open it (no 'locked')."""
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for i in range(40):  # the race is rare: many rounds
        barrier = ctx.Barrier(4)
        procs = [
            ctx.Process(target=_open_and_close, args=(str(tmp_path / f"s{i}.db"), barrier, errors))
            for _ in range(4)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
    assert errors.empty(), errors.get()
