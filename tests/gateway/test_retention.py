"""Tests of retention and downsampling as settings (gateway/store/retention.py, the backends' appliers,
the sink's late folding and ``suitcase gateway retention``), SQLite and a real InfluxDB 1.x."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.sinks.influxdb1 import InfluxDB1Sink
from gateway.store import SqliteStore, open_reader
from gateway.store.base import ROLLUP_WIDTHS, StoreError, Window
from gateway.store.influxdb1_rollups import (
    CQ_NAMES,
    FRESH_S,
    LATE_AFTER_S,
    ROLLUP_POLICIES,
    TIERS,
    InfluxDB1Rollups,
    aggregate_select,
    plan_windows,
    settle_s,
)
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
    # The command's now is the wall clock while it ran, somewhere from ``now`` to ``after``.
    after = time.time()
    assert result.exit_code == 0, result.output
    assert (
        "aarhus: keep raw and 5-, 30-s windows 1 d, minute windows (1, 5, 15 min) forever, "
        "hour windows (1, 3, 12 h, 1 d) forever" in result.output
    )
    assert (
        "odense: keep raw and 5-, 30-s windows 2 d, minute windows (1, 5, 15 min) 5 d, "
        "hour windows (1, 3, 12 h, 1 d) forever" in result.output
    )
    assert "readings past their retention deleted" in result.output
    with SqliteStore(path) as store:
        oldest = {
            d: min(r.time for r in store.readings(o, d, 0, now + 1))
            for o, d in (("aarhus", "pi-a"), ("odense", "pi-o"))
        }
        assert now - 1 * DAY - 1 <= oldest["pi-a"] <= after - 1 * DAY + 300
        assert now - 2 * DAY - 1 <= oldest["pi-o"] <= after - 2 * DAY + 300
        for device in ("pi-a", "pi-o"):  # four days still drawn, from the hour rollups
            assert store.windows(ORG_OF[device], device, start, now, 3600.0) == before[device]
    again = runner.invoke(app, ["retention", "apply", "--config", str(config), "--store", str(path)])
    assert again.exit_code == 0 and "nothing to change" in again.output
    shown = runner.invoke(app, ["retention", "show", "--store", str(path)])
    assert shown.exit_code == 0
    assert "aarhus: raw and 5-, 30-s windows 1 d" in shown.output
    assert "odense: raw and 5-, 30-s windows 2 d, minute windows (1, 5, 15 min) 5 d" in shown.output


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
    """Test that `retention apply` on InfluxDB 1.x gives each org database its raw retention policy,
    one policy per rollup tier (the minute ones kept minute_days, the hour ones hour_days) and one
    continuous query per tier; a second run changes nothing; a changed setting alters the policy."""
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
        **{p: ("0s" if w >= 3600 else "120h0m0s", False) for w, p in ROLLUP_POLICIES.items()},
    }
    assert sorted(ROLLUP_POLICIES.values()) == sorted(
        ["rollup_1m", "rollup_5m", "rollup_15m", "rollup_1h", "rollup_3h", "rollup_12h", "rollup_1d"]
    )
    cqs = {name for s in influxd.query("SHOW CONTINUOUS QUERIES") for name, _ in s.get("values", [])}
    assert cqs == set(CQ_NAMES.values())
    assert tool.apply(config, NOW).actions == ()
    assert tool.show()["aarhus"].raw_days == 1.0
    changed = tool.apply(parse_retention("default:\n  raw_days: 30\n"), NOW)
    assert "suitcase_odense: retention policy autogen now keeps 720h" in changed.actions
    assert "suitcase_odense: retention policy rollup_1m now keeps INF" in changed.actions
    assert "suitcase_odense: retention policy rollup_15m now keeps INF" in changed.actions


@pytest.mark.influxdb
def test_influxdb1_continuous_queries_compute_the_rollups(influxd: InfluxD) -> None:
    """Test that the continuous queries' SELECT, run finest first over a range as influxd runs
    them, write exact count, sum, min and max per window of every tier (the minutes from the raw
    readings, each coarser tier from the one below)."""
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), NOW)
    day = NOW - NOW % DAY
    records = _readings("o", "pi", day - 2 * DAY, day - 3 * 3600, 29.0)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    queries = tool.continuous_queries("suitcase_o")
    for width in ROLLUP_WIDTHS:
        influxd.query(_with_range(queries[CQ_NAMES[width]], day - 3 * DAY, day), "suitcase_o")
    for width, policy in ROLLUP_POLICIES.items():
        _same(_rollup(influxd, "suitcase_o", policy, "pi"), _expected(records, width))


@pytest.mark.influxdb
def test_influxdb1_sink_folds_late_readings_into_the_rollups(influxd: InfluxD) -> None:
    """Test that readings arriving 6 h after their window closed reach every rollup tier (1 min
    to 1 day) when the sink writes them (no continuous query covers them any more); a second late
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
    for width, policy in ROLLUP_POLICIES.items():
        _same(_rollup(influxd, "suitcase_o", policy, "pi"), _expected(late, width))
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
    """Test that `retention apply --backfill-days` fills every tier of data written before them."""
    records = _readings("o", "pi", NOW - 30 * 3600, NOW - 3600, 120.0)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    tool = InfluxDB1Rollups(influxd.url)
    tool.apply(parse_retention("default: {}"), NOW, backfill_days=2)
    for width, policy in ROLLUP_POLICIES.items():
        _same(_rollup(influxd, "suitcase_o", policy, "pi"), _expected(records, width))


@pytest.mark.influxdb
def test_influxdb1_unreachable_or_refused_says_why(influxd: InfluxD) -> None:
    """Test that an unreachable server and a refused statement each raise a StoreError naming it."""
    with pytest.raises(StoreError, match=r"cannot be reached .*check the host and port"):
        rollups_of("influxdb1://127.0.0.1:1").databases()
    with pytest.raises(StoreError, match=r"database not found"):
        InfluxDB1Rollups(influxd.url).policies("suitcase_missing")


def _windows(influxd: InfluxD, statements: list[str]) -> dict[float, tuple[int, float, float, float]]:
    """The windows the statements answer, a window's parts from two statements added up."""
    parts: dict[float, tuple[int, float, float, float]] = {}
    for statement in statements:
        for s in influxd.query(statement, "suitcase_o"):
            for t, count, total, low, high in s["values"]:
                if count:
                    n, sum_, lo, hi = parts.get(t / 1e9, (0, 0.0, low, high))
                    parts[t / 1e9] = (n + int(count), sum_ + total, min(lo, low), max(hi, high))
    return {t: (n, total / n, low, high) for t, (n, total, low, high) in parts.items()}


@pytest.mark.influxdb
def test_influxdb1_long_ranges_stay_drawn_after_raw_readings_expire(influxd: InfluxD) -> None:
    """Test that hourly windows of three days are read from the hour rollups for all but the last
    minutes (those from the minute rollups, the very last from the raw readings), equal the windows
    of the raw readings, and are still drawn once the raw readings'
    shards are dropped (what their retention does); windows of odd widths read the raw readings."""
    now = time.time()
    records = _readings("o", "pi", now - 3 * DAY, now, 150.0)
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), now)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    tool.backfill("suitcase_o", now - 4 * DAY, now)
    start, end = now - 3 * DAY, now
    conditions = "\"device\" = 'pi'"
    plan = plan_windows(
        "suitcase_o", '"temperature"', conditions, start, end, 3600.0, now=now, tiers=ROLLUP_WIDTHS
    )
    assert len(plan) == 3 and '"rollup_1h"' in plan[0] and '"rollup_1m"' in plan[1]
    assert '"suitcase_o".."temperature"' in plan[2]
    raw_only = plan_windows("suitcase_o", '"temperature"', conditions, start, end, 3600.0, now=now)
    got, want = _windows(influxd, plan), _windows(influxd, raw_only)
    assert sorted(got) == sorted(want)
    for t, (count, mean, low, high) in want.items():
        if t >= start - start % 3600 + 3600:  # the first window: the rollup holds the whole hour
            assert got[t][0] == count and got[t][2:] == (low, high) and abs(got[t][1] - mean) < 1e-9
    odd = plan_windows(
        "suitcase_o", '"temperature"', conditions, start, end, 3500.0, now=now, tiers=ROLLUP_WIDTHS
    )
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
    last two minutes reach every tier whose windows closed without the sink folding anything. On a
    server of its own (a new continuous query runs at once, finest first; a known one waits for its
    next interval)."""
    influxd = influxd_factory()
    try:
        now = time.time()
        records = [Record("o", "pi", "s", "temperature", float(i), now - 120 + i) for i in range(120)]
        sink = InfluxDB1Sink(influxd.host, influxd.port)
        sink.write(records)  # before the queries exist: their first run covers it
        rollups_of(influxd.sink_url).apply(parse_retention("orgs: {o: {}}"), now)
        assert sink.late.folded == 0
        for width, policy in ROLLUP_POLICIES.items():
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
    assert shown.exit_code == 0 and "aarhus: raw 1 d, minute windows (1, 5, 15 min) forever" in shown.output
    assert "no rollups yet" not in shown.output
    down = runner.invoke(app, ["retention", "show", "--store", "influxdb1://127.0.0.1:1"])
    assert down.exit_code == 2 and "check the host and port" in down.output


def test_each_tier_is_complete_before_its_query_stops_recomputing_it() -> None:
    """Test that the tiers are the embedded store's widths, each computed from a finer one that
    divides it, and that each continuous query's FOR span covers its window and the time its
    source takes to complete (so influxd recomputes a window until its source is final)."""
    assert tuple(t.width for t in TIERS) == ROLLUP_WIDTHS
    for tier in TIERS:
        assert tier.source is None or (tier.source < tier.width and tier.width % tier.source == 0)
        # The minute tier: a reading up to LATE_AFTER_S late is the query's (later ones the sink's).
        delay = LATE_AFTER_S + tier.every if tier.source is None else settle_s(tier.width)
        assert tier.span >= tier.width + delay
        assert tier.span % tier.every == 0 and tier.every <= tier.width


def _old_layout(influxd: InfluxD, db: str, start: float, end: float) -> None:
    """Make ``db`` as the version before the tiers left it: rollup_1m and rollup_1h, both computed
    from the raw readings over ``[start, end)``, and its two continuous queries."""
    influxd.query(f'CREATE RETENTION POLICY "rollup_1m" ON "{db}" DURATION INF REPLICATION 1')
    influxd.query(f'CREATE RETENTION POLICY "rollup_1h" ON "{db}" DURATION INF REPLICATION 1')
    where = f" WHERE time >= {int(start * 1e9)} AND time < {int(end * 1e9)}"
    for width in (60, 3600):
        influxd.query(aggregate_select(db, "autogen", width, where), db)
    influxd.query(
        f'CREATE CONTINUOUS QUERY "suitcase_rollup_1m" ON "{db}" RESAMPLE EVERY 1m FOR 10m BEGIN '
        + aggregate_select(db, "autogen", 60)
        + " END"
    )
    influxd.query(
        f'CREATE CONTINUOUS QUERY "suitcase_rollup_1h" ON "{db}" RESAMPLE EVERY 10m FOR 2h BEGIN '
        + aggregate_select(db, "autogen", 3600)
        + " END"
    )


def _same_windows(got: list[Window], want: list[Window]) -> None:
    assert [(w.start, w.sensor, w.quantity, w.count, w.min, w.max) for w in got] == [
        (w.start, w.sensor, w.quantity, w.count, w.min, w.max) for w in want
    ]
    assert all(abs(a.mean - b.mean) < 1e-9 for a, b in zip(got, want, strict=True))


@pytest.mark.influxdb
def test_influxdb1_windows_of_every_tier_equal_the_embedded_stores(influxd: InfluxD, tmp_path: Path) -> None:
    """Test that windows of every tier's width (and of multiples of one) read from InfluxDB's
    rollups equal the embedded store's windows of the same readings, from a start that is no
    window boundary up to now (the newest windows come from the minute rollups and the raw
    readings); a window a tier's width wide, older than that tier's delay, is its points read as
    they are (no GROUP BY time()), and so is one of up to four points, which the reader adds up."""
    now = time.time()
    records = _readings("o", "pi", now - 3 * DAY, now, 97.0)
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), now)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    tool.backfill("suitcase_o", now - 4 * DAY, now)
    reader = open_reader(influxd.sink_url)
    start = now - 2.6 * DAY
    try:
        with SqliteStore(tmp_path / "s.db") as lite:
            lite.write(records)
            for every in (*ROLLUP_WIDTHS, 120.0, 360.0, 1800.0, 7200.0, 2 * DAY):
                _same_windows(
                    reader.windows("o", "pi", start, now, every), lite.windows("o", "pi", start, now, every)
                )
    finally:
        reader.close()
    for width, policy in ROLLUP_POLICIES.items():
        old = now - settle_s(width) - 2 * width
        old -= old % width
        (plain,) = plan_windows(
            "suitcase_o",
            "/.*/",
            "\"device\" = 'pi'",
            old - 20 * width,
            old,
            width,
            now=now,
            tiers=ROLLUP_WIDTHS,
        )
        assert f'"{policy}"' in plain and "GROUP BY time" not in plain
    # Windows of 2 minute points (a 24 h chart's) are the points read as they are, added up by
    # the reader (influxd's GROUP BY costs ~2x here); windows of 6 are grouped by influxd.
    old = now - settle_s(60) - 3600
    old -= old % 3600
    for every, grouped in ((120, False), (240, False), (360, True)):
        (statement,) = plan_windows(
            "suitcase_o", "/.*/", "\"device\" = 'pi'", old - 3600, old, every, now=now, tiers=ROLLUP_WIDTHS
        )
        assert '"rollup_1m"' in statement and ("GROUP BY time" in statement) == grouped
    # A chart of means asks influxd for counts and sums only, from raw readings and every tier.
    for lo, every in ((now - 600, 5.0), (old - 3600, 120.0), (old - 3600, 360.0), (old - 20 * DAY, DAY)):
        for statement in plan_windows(
            "suitcase_o",
            "/.*/",
            "\"device\" = 'pi'",
            lo,
            now,
            every,
            now=now,
            tiers=ROLLUP_WIDTHS,
            means_only=True,
        ):
            assert "count" in statement and "sum" in statement, statement
            assert "min" not in statement and "max" not in statement, statement


@pytest.mark.influxdb
def test_influxdb1_older_database_is_read_then_upgraded(influxd: InfluxD, tmp_path: Path) -> None:
    """Test that a database set up by the version before the tiers (rollup_1m and rollup_1h only)
    still has rollups: the reader groups its minute and hour windows into 15-minute and 12-hour
    windows equal to the embedded store's, the sink folds late readings into both (the hour from
    the minutes); `retention show` names the missing tiers, and `retention apply` creates them,
    computes their history from the minute and hour windows, and replaces the hour query."""
    now = time.time()
    records = _readings("o", "pi", now - 3 * DAY, now - 7 * 3600, 97.0)
    late = _readings("o", "pi", now - 7 * 3600, now - 6 * 3600, 13.0)
    InfluxDB1Sink(influxd.host, influxd.port).write(records)
    _old_layout(influxd, "suitcase_o", now - 4 * DAY, now)
    sink = InfluxDB1Sink(influxd.host, influxd.port)
    sink.write(late)
    assert sink.late.folded == 1
    for width in (60, 3600):
        _same(_rollup(influxd, "suitcase_o", ROLLUP_POLICIES[width], "pi"), _expected(records + late, width))
    start = now - 2.6 * DAY
    reader = open_reader(influxd.sink_url)
    runner = CliRunner()
    try:
        with SqliteStore(tmp_path / "s.db") as lite:
            lite.write(records + late)
            want = {every: lite.windows("o", "pi", start, now, every) for every in (900.0, 43200.0, 86400.0)}
        for every, windows in want.items():
            _same_windows(reader.windows("o", "pi", start, now, every), windows)
        shown = runner.invoke(app, ["retention", "show", "--store", influxd.sink_url])
        assert "suitcase_o: made by an older version, lacks rollup_5m, rollup_15m, rollup_3h" in shown.output
        config = tmp_path / "r.yaml"
        config.write_text("default: {}\n")
        result = runner.invoke(
            app, ["retention", "apply", "--config", str(config), "--store", influxd.sink_url]
        )
        assert result.exit_code == 0, result.output
        assert "suitcase_o: rollup_15m computed from rollup_5m" in result.output
        assert "suitcase_o: rollup_1d computed from rollup_12h" in result.output
        assert "suitcase_o: continuous query suitcase_rollup_1h replaced" in result.output
        assert "suitcase_rollup_1m" not in result.output  # unchanged
        for width, policy in ROLLUP_POLICIES.items():
            _same(_rollup(influxd, "suitcase_o", policy, "pi"), _expected(records + late, width))
        reader.recheck_s = 0  # type: ignore[attr-defined]
        for every, windows in want.items():
            _same_windows(reader.windows("o", "pi", start, now, every), windows)
        again = runner.invoke(app, ["retention", "show", "--store", influxd.sink_url])
        assert "older version" not in again.output
    finally:
        reader.close()


@pytest.mark.influxdb
def test_influxdb1_reader_reads_a_tier_only_where_its_query_has_run(influxd: InfluxD, tmp_path: Path) -> None:
    """Test that the reader takes a tier's windows only where the continuous queries' schedule has
    completed them (each tier :func:`settle_s` behind, as influxd would leave them), and the newer
    windows from the minute tier and the raw readings: every width's windows up to now equal the
    embedded store's, with the coarse tiers hours behind the raw readings."""
    now = time.time()
    start = now - 2 * DAY
    records = _readings("o", "pi", start, now, 97.0)
    tool = rollups_of(influxd.sink_url)
    tool.apply(parse_retention("orgs: {o: {}}"), now)
    # The schedule is simulated below: influxd's own continuous queries must not run as well (a new
    # one first runs at influxd's next check, a second or more after its creation, by which time the
    # readings are written: it computed today's day window, and the check below failed).
    for name in CQ_NAMES.values():
        influxd.query(f'DROP CONTINUOUS QUERY "{name}" ON "suitcase_o"')
    InfluxDB1Sink(influxd.host, influxd.port, clock=lambda: 0.0).write(records)  # nothing folded
    day = start - start % DAY
    for tier in TIERS:  # finest first, each as far as its query would have run by now
        ready = math.floor((now - settle_s(tier.width)) / tier.width) * tier.width
        where = f" WHERE time >= {int(day * 1e9)} AND time < {int(ready * 1e9)}"
        influxd.query(aggregate_select("suitcase_o", "autogen", tier.width, where, tier.source), "suitcase_o")
    newest = max(t for t in _rollup(influxd, "suitcase_o", "rollup_1d", "pi"))
    assert newest < now - DAY - settle_s(86400) + 1  # the day tier lags: today's window is not in it
    reader = open_reader(influxd.sink_url)
    reader.clock = lambda: now  # type: ignore[attr-defined]
    try:
        with SqliteStore(tmp_path / "s.db") as lite:
            lite.write(records)
            for every in (*ROLLUP_WIDTHS, 7200.0, 2 * DAY):
                _same_windows(
                    reader.windows("o", "pi", start + 1234.5, now, every),
                    lite.windows("o", "pi", start + 1234.5, now, every),
                )
    finally:
        reader.close()
