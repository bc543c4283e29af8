"""Tests of retention and downsampling as settings (gateway/store/retention.py, the backends' appliers,
the sink's late folding and ``suitcase gateway retention``), SQLite and a real InfluxDB 1.x."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.sinks.influxdb1 import InfluxDB1Sink
from gateway.store import SqliteStore, open_reader
from gateway.store.base import StoreError
from gateway.store.influxdb1_rollups import CQ_NAMES, FRESH_S, InfluxDB1Rollups, plan_windows
from gateway.store.influxdb1_rollups import from_url as rollups_of
from gateway.store.retention import RetentionLoop, open_target, parse_retention
from kits.errors import ConfigError
from kits.wire import Record
from tests.services.influxdb import InfluxD
from tests.waiting import wait_until

DAY = 86_400.0
ORG_OF = {"pi-a": "aarhus", "pi-o": "odense"}
NOW = 1_750_000_000.0 - 1_750_000_000.0 % 3600 + 1800.0  # half past an hour

SETTINGS = """\
default:
  raw_days: 2
  minute_days: 5
orgs:
  aarhus:
    raw_days: 1
"""


def _readings(org: str, device: str, start: float, end: float, step: float) -> list[Record]:
    out = []
    t = start
    while t < end:
        out.append(Record(org, device, "bme280", "temperature", round(20 + (t % 7), 3), t))
        t += step
    return out


def test_cli_applies_sqlite_retention_and_long_ranges_stay_drawn(tmp_path: Path) -> None:
    """Test that `retention apply` on SQLite keeps each org's raw readings only their days (the
    default, or the org's own), and that hourly windows of the whole range stay drawn from the
    rollups after the raw readings expired."""
    path = tmp_path / "store.db"
    config = tmp_path / "retention.yaml"
    config.write_text(SETTINGS)
    now = time.time()
    start = now - 4 * DAY - now % 3600
    with SqliteStore(path) as store:
        store.write(_readings("aarhus", "pi-a", start, now, 300.0))
        store.write(_readings("odense", "pi-o", start, now, 300.0))
        before = {
            d: store.windows(o, d, start, now, 3600.0) for o, d in (("aarhus", "pi-a"), ("odense", "pi-o"))
        }
    runner = CliRunner()
    result = runner.invoke(app, ["retention", "apply", "--config", str(config), "--store", str(path)])
    assert result.exit_code == 0, result.output
    assert "aarhus: keep raw 1 d, 1-minute windows forever, 1-hour windows forever" in result.output
    assert "odense: keep raw 2 d, 1-minute windows 5 d, 1-hour windows forever" in result.output
    assert "readings past their retention deleted" in result.output
    with SqliteStore(path) as store:
        oldest = {
            d: min(r.time for r in store.readings(o, d, 0, now + 1))
            for o, d in (("aarhus", "pi-a"), ("odense", "pi-o"))
        }
        assert now - 1 * DAY - 1 <= oldest["pi-a"] <= now - 1 * DAY + 300
        assert now - 2 * DAY - 1 <= oldest["pi-o"] <= now - 2 * DAY + 300
        for device in ("pi-a", "pi-o"):  # four days still drawn, from the hour rollups
            assert store.windows(ORG_OF[device], device, start, now, 3600.0) == before[device]
    again = runner.invoke(app, ["retention", "apply", "--config", str(config), "--store", str(path)])
    assert again.exit_code == 0 and "nothing to change" in again.output
    shown = runner.invoke(app, ["retention", "show", "--store", str(path)])
    assert shown.exit_code == 0
    assert "aarhus: raw 1 d" in shown.output and "odense: raw 2 d, 1-minute windows 5 d" in shown.output


def test_late_readings_reach_the_sqlite_rollups(tmp_path: Path) -> None:
    """Test that readings of a window that closed hours ago (an outbox draining a 6 h outage)
    land in that window's rollups, and a redelivery of them does not count twice."""
    with SqliteStore(tmp_path / "s.db") as store:
        store.write(_readings("o", "pi", NOW - 7 * 3600, NOW, 600.0))  # live: one every 10 min
        store.apply_retention(NOW)  # refreshes the rollups
        hour = NOW - 6 * 3600 - (NOW - 6 * 3600) % 3600
        late = _readings("o", "pi", hour + 7, hour + 3600, 60.0)
        for _ in range(2):
            store.write(late)
        (window,) = store.windows("o", "pi", hour, hour + 3600, 3600.0)
        raw = store.readings("o", "pi", hour, hour + 3600)
        assert window.count == len(raw) > len(late)
        assert abs(window.mean - sum(r.value for r in raw) / len(raw)) < 1e-9


def test_bad_retention_settings_say_what_to_fix(tmp_path: Path) -> None:
    """Test that a misspelt key, a negative duration, an unknown scheme and a hand-made backend
    each fail with the setting and the fix; the CLI exits 2."""
    with pytest.raises(ConfigError, match=r"raw_days"):
        parse_retention("default:\n  raw_dayz: 3\n")
    with pytest.raises(ConfigError, match=r"greater than 0"):
        parse_retention("orgs:\n  aarhus:\n    hour_days: -1\n")
    with pytest.raises(StoreError, match=r"unknown scheme 'mysql'"):
        open_target("mysql://x")
    with pytest.raises(StoreError, match=r"README.md, 'Retention and downsampling'"):
        open_target("influxdb://host:8086?org=o&token=t")
    config = tmp_path / "r.yaml"
    config.write_text("default:\n  minute_dayz: 3\n")
    result = CliRunner().invoke(app, ["retention", "apply", "--config", str(config), "--store", "x.db"])
    assert result.exit_code == 2 and "minute_dayz" in result.output


def test_gateway_run_refuses_bad_retention_settings(tmp_path: Path) -> None:
    """Test that `gateway run --retention` with a missing or wrong file exits 2 naming it."""
    runner = CliRunner()
    missing = runner.invoke(
        app, ["run", "--store", str(tmp_path / "s.db"), "--retention", str(tmp_path / "no.yaml")]
    )
    assert missing.exit_code == 2 and "no.yaml" in missing.output
    wrong = tmp_path / "r.yaml"
    wrong.write_text("orgs:\n  aarhus:\n    raw_days: forever\n")
    result = runner.invoke(
        app, ["run", "--store", str(tmp_path / "s.db"), "--retention", str(wrong), "--workers", "2"]
    )
    assert result.exit_code == 2 and "raw_days" in result.output


def test_retention_loop_applies_every_store_and_survives_one_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that the gateway's retention loop applies the settings to each store it can, names the
    recipe for one it cannot, and logs (not dies of) a store that is down."""
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        store.write(_readings("o", "pi", NOW - 3 * DAY, NOW, 3600.0))
    caplog.set_level(logging.INFO)
    loop = RetentionLoop(
        parse_retention(SETTINGS),
        [str(path), "influxdb://h:1?org=o&token=t", "influxdb1://127.0.0.1:1?password=secret"],
        clock=lambda: NOW,
    )
    assert "README.md, 'Retention and downsampling'" in caplog.text
    applied = loop.run_once()
    assert [a.store for a in applied] == [str(path)] and applied[0].deleted > 0
    assert (
        "retention of influxdb1://127.0.0.1:1 not applied" in caplog.text
        and "cannot be reached" in caplog.text
    )
    assert "secret" not in caplog.text
    with SqliteStore(path) as store:
        assert store.retention() == {"o": (2.0, 5.0, None), "aarhus": (1.0, None, None)}


# ---------------------------------------------------------------------- InfluxDB 1.x


def _with_range(cq: str, start: float, end: float) -> str:
    """The SELECT of a continuous query, run by hand over [start, end) as the CQ would."""
    select = re.search(r"BEGIN (.*) END$", cq)
    assert select is not None
    where = f" WHERE time >= {int(start * 1e9)} AND time < {int(end * 1e9)} GROUP BY"
    return select.group(1).replace(" GROUP BY", where, 1)


def _rollup(
    influxd: InfluxD, db: str, policy: str, device: str
) -> dict[float, tuple[int, float, float, float]]:
    series = influxd.query(
        f'SELECT "count", "sum", "min", "max" FROM "{db}"."{policy}"."temperature" '
        f"WHERE \"device\" = '{device}'",
        db,
    )
    return {row[0] / 1e9: (int(row[1]), row[2], row[3], row[4]) for s in series for row in s["values"]}


def _expected(records: list[Record], width: int) -> dict[float, tuple[int, float, float, float]]:
    groups: dict[float, list[float]] = {}
    for r in records:
        groups.setdefault(r.time - r.time % width, []).append(r.value)
    return {t: (len(v), sum(v), min(v), max(v)) for t, v in groups.items()}


def _same(
    got: dict[float, tuple[int, float, float, float]], want: dict[float, tuple[int, float, float, float]]
) -> None:
    assert sorted(got) == sorted(want)
    for t, (count, total, low, high) in want.items():
        assert got[t][0] == count and got[t][2:] == (low, high)
        assert abs(got[t][1] - total) < 1e-6


@pytest.mark.influxdb
def test_influxdb1_apply_creates_policies_and_continuous_queries(influxd: InfluxD) -> None:
    """Test that `retention apply` on InfluxDB 1.x gives each org database its raw, 1-minute and
    1-hour retention policies and the two continuous queries; a second run changes nothing; a
    changed setting alters the policy."""
    influxd.query('CREATE DATABASE "suitcase_odense"')
    influxd.query('CREATE DATABASE "suitcase"')  # the store's meta database: left alone
    config = parse_retention(SETTINGS)
    tool = rollups_of(influxd.sink_url)
    first = tool.apply(config, NOW)
    assert not [a for a in first.actions if a.startswith("suitcase:")]
    assert "suitcase_aarhus: created" in first.actions  # named in the settings: made up front
    policies = {
        s["values"][i][0]: (s["values"][i][1], s["values"][i][4])
        for s in influxd.query('SHOW RETENTION POLICIES ON "suitcase_odense"')
        for i in range(len(s["values"]))
    }
    assert policies == {
        "autogen": ("48h0m0s", True),
        "rollup_1m": ("120h0m0s", False),
        "rollup_1h": ("0s", False),
    }
    cqs = {name for s in influxd.query("SHOW CONTINUOUS QUERIES") for name, _ in s.get("values", [])}
    assert cqs == set(CQ_NAMES.values())
    assert tool.apply(config, NOW).actions == ()
    assert tool.show()["aarhus"].raw_days == 1.0
    changed = tool.apply(parse_retention("default:\n  raw_days: 30\n"), NOW)
    assert "suitcase_odense: retention policy autogen now keeps 720h" in changed.actions
    assert "suitcase_odense: retention policy rollup_1m now keeps INF" in changed.actions


@pytest.mark.influxdb
def test_influxdb1_continuous_queries_compute_the_rollups(influxd: InfluxD) -> None:
    """Test that the continuous queries' SELECT, run over a range as influxd runs it, writes
    exact count, sum, min and max per minute and per hour."""
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), NOW)
    records = _readings("o", "pi", NOW - 2 * 3600, NOW, 7.0)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    queries = tool.continuous_queries("suitcase_o")
    influxd.query(_with_range(queries[CQ_NAMES[60]], NOW - 3 * 3600, NOW), "suitcase_o")
    influxd.query(_with_range(queries[CQ_NAMES[3600]], NOW - 3 * 3600, NOW), "suitcase_o")
    _same(_rollup(influxd, "suitcase_o", "rollup_1m", "pi"), _expected(records, 60))
    _same(_rollup(influxd, "suitcase_o", "rollup_1h", "pi"), _expected(records, 3600))


@pytest.mark.influxdb
def test_influxdb1_sink_folds_late_readings_into_the_rollups(influxd: InfluxD) -> None:
    """Test that readings arriving 6 h after their window closed reach the minute and hour
    rollups when the sink writes them (no continuous query covers them any more); a second late
    batch in the same hour is added, a redelivery is not counted twice, and on-time readings are
    left to the continuous queries."""
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), NOW)
    sink = InfluxDB1Sink(influxd.host, influxd.port, clock=lambda: NOW)
    late = _readings("o", "pi", NOW - 6.5 * 3600, NOW - 6 * 3600, 13.0)
    sink.write(late[: len(late) // 2])
    sink.write(late[len(late) // 2 :])
    sink.write(late[:50])  # a redelivery
    sink.write(_readings("o", "pi", NOW - 60, NOW, 10.0))  # live
    _same(_rollup(influxd, "suitcase_o", "rollup_1m", "pi"), _expected(late, 60))
    _same(_rollup(influxd, "suitcase_o", "rollup_1h", "pi"), _expected(late, 3600))
    assert sink.late.folded == 3


@pytest.mark.influxdb
def test_influxdb1_sink_without_rollups_folds_nothing(influxd: InfluxD) -> None:
    """Test that a database the tool never touched gets no rollup writes (nothing to fold into)."""
    sink = InfluxDB1Sink(influxd.host, influxd.port, clock=lambda: NOW)
    sink.write(_readings("o", "pi", NOW - 6 * 3600, NOW - 5 * 3600, 60.0))
    assert sink.late.folded == 0
    names = {row[0] for s in influxd.query('SHOW RETENTION POLICIES ON "suitcase_o"') for row in s["values"]}
    assert names == {"autogen"}


@pytest.mark.influxdb
def test_influxdb1_backfill_recomputes_existing_data(influxd: InfluxD) -> None:
    """Test that `retention apply --backfill-days` fills the rollups of data written before them."""
    records = _readings("o", "pi", NOW - 30 * 3600, NOW - 3600, 120.0)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    tool = InfluxDB1Rollups(influxd.url)
    tool.apply(parse_retention("default: {}"), NOW, backfill_days=2)
    _same(_rollup(influxd, "suitcase_o", "rollup_1h", "pi"), _expected(records, 3600))


@pytest.mark.influxdb
def test_influxdb1_unreachable_or_refused_says_why(influxd: InfluxD) -> None:
    """Test that an unreachable server and a refused statement each raise a StoreError naming it."""
    with pytest.raises(StoreError, match=r"cannot be reached .*check the host and port"):
        rollups_of("influxdb1://127.0.0.1:1").databases()
    with pytest.raises(StoreError, match=r"database not found"):
        InfluxDB1Rollups(influxd.url).policies("suitcase_missing")


def _windows(influxd: InfluxD, statements: list[str]) -> dict[float, tuple[int, float, float, float]]:
    out: dict[float, tuple[int, float, float, float]] = {}
    for statement in statements:
        for s in influxd.query(statement, "suitcase_o"):
            for t, count, total, low, high in s["values"]:
                if count:
                    assert t / 1e9 not in out  # no window read twice
                    out[t / 1e9] = (int(count), total / count, low, high)
    return out


@pytest.mark.influxdb
def test_influxdb1_long_ranges_stay_drawn_after_raw_readings_expire(influxd: InfluxD) -> None:
    """Test that hourly windows of three days are read from the hour rollups for all but the last
    minutes, equal the windows of the raw readings, and are still drawn once the raw readings'
    shards are dropped (what their retention does); windows of odd widths read the raw readings."""
    now = time.time()
    records = _readings("o", "pi", now - 3 * DAY, now, 150.0)
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), now)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    tool.backfill("suitcase_o", now - 4 * DAY, now)
    start, end = now - 3 * DAY, now
    conditions = "\"device\" = 'pi'"
    plan = plan_windows("suitcase_o", '"temperature"', conditions, start, end, 3600.0, now=now, rollups=True)
    assert len(plan) == 2 and '"rollup_1h"' in plan[0] and '"suitcase_o".."temperature"' in plan[1]
    raw_only = plan_windows(
        "suitcase_o", '"temperature"', conditions, start, end, 3600.0, now=now, rollups=False
    )
    got, want = _windows(influxd, plan), _windows(influxd, raw_only)
    assert sorted(got) == sorted(want)
    for t, (count, mean, low, high) in want.items():
        if t >= start - start % 3600 + 3600:  # the first window: the rollup holds the whole hour
            assert got[t][0] == count and got[t][2:] == (low, high) and abs(got[t][1] - mean) < 1e-9
    odd = plan_windows("suitcase_o", '"temperature"', conditions, start, end, 3500.0, now=now, rollups=True)
    assert len(odd) == 1 and "rollup" not in odd[0]
    shards = [
        row[0]
        for s in influxd.query("SHOW SHARDS")
        for row in s["values"]
        if row[1:3] == ["suitcase_o", "autogen"]
    ]
    assert shards
    for shard in shards:
        influxd.query(f"DROP SHARD {shard}")
    assert _windows(influxd, raw_only) == {}
    still = _windows(influxd, plan)
    assert {t: v for t, v in still.items() if t < now - FRESH_S - 3600} == {
        t: v for t, v in got.items() if t < now - FRESH_S - 3600
    }


def _complete(
    influxd: InfluxD, policy: str, want: dict[float, tuple[int, float, float, float]]
) -> Callable[[], bool]:
    def check() -> bool:
        got = _rollup(influxd, "suitcase_o", policy, "pi")
        return all(t in got and got[t][0] == v[0] for t, v in want.items())

    return check


@pytest.mark.slow
@pytest.mark.influxdb
def test_influxdb1_continuous_queries_run_on_their_own(influxd_factory: Callable[[], InfluxD]) -> None:
    """Test that influxd itself runs the rollup continuous queries the tool created: readings of the
    last two minutes reach both rollups without the sink folding anything. On a server of its own
    (a new continuous query runs at once; a known one waits for its next interval, up to 10 min for
    the hour query)."""
    influxd = influxd_factory()
    try:
        now = time.time()
        records = [Record("o", "pi", "s", "temperature", float(i), now - 120 + i) for i in range(120)]
        sink = InfluxDB1Sink(influxd.host, influxd.port)
        sink.write(records)  # before the queries exist: their first run covers it
        rollups_of(influxd.sink_url).apply(parse_retention("orgs: {o: {}}"), now)
        assert sink.late.folded == 0
        for policy, width in (("rollup_1m", 60), ("rollup_1h", 3600)):
            want = _expected([r for r in records if r.time < now - now % width], width)
            wait_until(
                _complete(influxd, policy, want),
                timeout=90,
                every=1,
                what=f"the {policy} continuous query to run",
            )
            got = _rollup(influxd, "suitcase_o", policy, "pi")
            _same({t: v for t, v in got.items() if t in want}, want)
    finally:
        influxd.stop()


@pytest.mark.influxdb
def test_reader_windows_stay_drawn_on_influxdb_after_raw_expiry(influxd: InfluxD) -> None:
    """Test, through the store's read interface (what the server's charts call), that a 3-day chart
    of hourly windows on InfluxDB reads the hour rollups, and draws the same windows once the raw
    readings are gone; and that a database without rollups is read from its raw readings."""
    now = time.time()
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), now)
    records = _readings("o", "pi", now - 3 * DAY, now, 150.0)
    InfluxDB1Sink(influxd.host, influxd.port).write(records + _readings("p", "pi-p", now - DAY, now, 600.0))
    tool.backfill("suitcase_o", now - 4 * DAY, now)
    reader = open_reader(influxd.sink_url)
    try:
        start = now - 3 * DAY
        before = reader.windows("o", "pi", start, now, 3600.0)
        assert len(before) >= 72 and sum(w.count for w in before) >= len(records)
        raw_only = reader.windows("p", "pi-p", now - DAY, now, 3600.0)  # no rollups in suitcase_p
        assert sum(w.count for w in raw_only) == len(_readings("p", "pi-p", now - DAY, now, 600.0))
        for (shard,) in [
            row[:1]
            for s in influxd.query("SHOW SHARDS")
            for row in s["values"]
            if row[1:3] == ["suitcase_o", "autogen"]
        ]:
            influxd.query(f"DROP SHARD {shard}")
        assert reader.readings("o", "pi", start, now) == []
        old = now - FRESH_S - 3600
        after = reader.windows("o", "pi", start, now, 3600.0)
        assert [w for w in after if w.start < old] == [w for w in before if w.start < old]
    finally:
        reader.close()


@pytest.mark.influxdb
def test_cli_on_influxdb1(influxd: InfluxD, tmp_path: Path) -> None:
    """Test `suitcase gateway retention apply|show` on InfluxDB 1.x: policies and queries made,
    rollups of existing data recomputed with --backfill-days, then shown; an unreachable server exits
    2 with the fix."""
    now = time.time()
    InfluxDB1Sink(influxd.host, influxd.port).write(_readings("aarhus", "pi", now - 5 * 3600, now, 60.0))
    before = CliRunner().invoke(app, ["retention", "show", "--store", influxd.sink_url])
    assert "suitcase_aarhus: no rollups yet" in before.output
    config = tmp_path / "retention.yaml"
    config.write_text(SETTINGS)
    runner = CliRunner()
    args = [
        "retention",
        "apply",
        "--config",
        str(config),
        "--store",
        influxd.sink_url,
        "--backfill-days",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "suitcase_aarhus: retention policy autogen now keeps 24h" in result.output
    assert "suitcase_aarhus: rollups recomputed for the last 1 days" in result.output
    assert sum(v[0] for v in _rollup(influxd, "suitcase_aarhus", "rollup_1h", "pi").values()) == 300
    shown = runner.invoke(app, ["retention", "show", "--store", influxd.sink_url])
    assert shown.exit_code == 0 and "aarhus: raw 1 d, 1-minute windows forever" in shown.output
    assert "no rollups yet" not in shown.output
    down = runner.invoke(app, ["retention", "show", "--store", "influxdb1://127.0.0.1:1"])
    assert down.exit_code == 2 and "check the host and port" in down.output
