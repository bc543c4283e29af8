"""The Grafana dashboards' InfluxQL queries run against a real InfluxDB 1.x and return the series
they should: the gateway's sink writes the readings, Grafana's macros and template variables are
expanded as Grafana does (tests/dashboards/grafana_macros.py), and every panel of every template
answers one series per device and sensor whose values are the mean (sum for counts) per interval.

Grafana itself cannot run here: the expansion follows Grafana's code and docs, cited there. The
Flux flavour needs InfluxDB 2, which cannot run here either; it stays string-checked."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dashboards.build import TEMPLATE_DERIVED, TEMPLATE_VARIABLES, DerivedPanel, build_all
from dashboards.schema import database_for
from gateway.sinks.influxdb1 import InfluxDB1Sink
from kits.quantities import spec
from kits.wire import Record
from tests.dashboards.grafana_macros import (
    GrafanaRange,
    expand,
    format_interval,
    interval_ms,
    resolve_variables,
)
from tests.services.influxdb import InfluxD

pytestmark = pytest.mark.influxdb

HOUR_MS = 3_600_000
DEVICES = ("aarhus-pi-1", "aarhus-pi-2")


def _value(device: str, quantity: str, t: float) -> float:
    base = 1.0 + (len(quantity) % 7) + DEVICES.index(device) * 10
    return round(base + (int(t) // 600) % 13 + (int(t) % 600) / 100, 3)


def _write(influxd: InfluxD, now: float) -> list[Record]:
    """Readings of every quantity any dashboard shows: two devices of aarhus, one of odense."""
    quantities = sorted(
        {
            p["targets"][0]["query"].split('FROM "')[1].split('"')[0]
            for d in build_all().values()
            for p in d["panels"]
        }
    )
    records = [
        Record("aarhus", device, "s1", quantity, _value(device, quantity, t), t)
        for device in DEVICES
        for quantity in quantities
        for start in range(int(now - 30 * 3600), int(now), 600)
        for t in (start, start + 7)  # two readings in most intervals: mean and sum differ
    ]
    others = [Record("odense", "odense-pi-9", "s1", q, 99.0, now - 60) for q in quantities]
    InfluxDB1Sink(influxd.host, influxd.port).write(records + others)
    return records


def _bucket(ms: int, rng: GrafanaRange, every: str, zone: str) -> int:
    if every == "1d":  # local days: InfluxQL's tz() clause
        day = datetime.fromtimestamp(ms / 1000, ZoneInfo(zone)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return round(day.timestamp() * 1000)
    width = HOUR_MS if every == "1h" else interval_ms(rng)
    return ms - ms % width


def _expected(
    records: list[Record],
    quantity: str,
    rng: GrafanaRange,
    devices: tuple[str, ...],
    derived: DerivedPanel | None = None,
    constants: dict[str, Any] | None = None,
) -> dict[tuple[str, str], dict[int, float]]:
    summed = quantity == "passes"
    every = derived.every if derived is not None else "$__interval"
    zone = str((constants or {}).get("tz", "UTC"))
    buckets: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        ms = round(r.time * 1000)
        if r.quantity == quantity and r.device in devices and rng.from_ms <= ms <= rng.to_ms:
            buckets[(r.device, r.sensor)][_bucket(ms, rng, every, zone)].append(r.value)
    numbers = {k: float(v) for k, v in (constants or {}).items() if k != "tz"}
    out = {}
    for key, by_time in buckets.items():
        out[key] = {}
        for t, v in by_time.items():
            aggregate = sum(v) if summed else sum(v) / len(v)
            out[key][t] = derived.compute(aggregate, numbers) if derived is not None else aggregate
    return out


def _series(influxd: InfluxD, query: str, db: str) -> dict[tuple[str, str], dict[int, float]]:
    out: dict[tuple[str, str], dict[int, float]] = {}
    for s in influxd.query(query, db):
        tags = s["tags"]
        out[(tags["device"], tags["sensor"])] = {
            round(row[0] / 1e6): row[1] for row in s["values"] if row[1] is not None
        }
    return out


def test_interval_follows_grafana_rounding() -> None:
    """Test the $__interval rule on the ranges a dashboard offers (1000 points wide)."""
    day, week, year = 24 * HOUR_MS, 7 * 24 * HOUR_MS, 365 * 24 * HOUR_MS
    assert [format_interval(interval_ms(GrafanaRange(0, span))) for span in (HOUR_MS, day, week, year)] == [
        "5s",
        "1m",
        "10m",
        "6h",
    ]
    assert format_interval(interval_ms(GrafanaRange(0, day, max_data_points=100))) == "15m"
    assert format_interval(interval_ms(GrafanaRange(0, HOUR_MS, min_interval_ms=60_000))) == "1m"


@pytest.mark.parametrize("hours", [6, 24])
def test_every_panel_returns_each_device_series(influxd: InfluxD, hours: int) -> None:
    """Test that every panel of every InfluxQL dashboard, expanded as Grafana would for org
    aarhus and "All" devices over the last ``hours``, returns exactly aarhus's devices' series
    with the mean (sum for counts) of each interval, and nothing of another organisation."""
    now = time.time()
    records = _write(influxd, now)
    db = database_for("aarhus")
    rng = GrafanaRange(round((now - hours * 3600) * 1000), round(now * 1000))
    checked = 0
    for template, dashboard in build_all("influxql").items():
        values = resolve_variables(dashboard, lambda q: influxd.query(q, db))
        constants = {n: values.pop(n) for n, _, _ in TEMPLATE_VARIABLES.get(template, ())}
        assert values == {"org": "aarhus", "device": list(DEVICES)}, template
        derived = {d.quantity: d for d in TEMPLATE_DERIVED.get(template, ())}
        titles = [p["title"] for p in dashboard["panels"]]
        # what a person reads first comes first
        assert titles[: len(derived)] == [spec(q).label for q in derived], template  # type: ignore[union-attr]
        for panel in dashboard["panels"]:
            target = panel["targets"][0]
            query = expand(target["query"], dashboard, {**values, **constants}, rng)
            made = next((d for d in derived.values() if spec(d.quantity).label == panel["title"]), None)  # type: ignore[union-attr]
            every = (
                format_interval(interval_ms(rng))
                if made is None or made.every == "$__interval"
                else made.every
            )
            assert f"GROUP BY time({every})" in query
            quantity = query.split('FROM "')[1].split('"')[0]
            got = _series(influxd, query, db)
            want = _expected(records, quantity, rng, DEVICES, made, constants)
            assert set(got) == set(want) == {(d, "s1") for d in DEVICES}, (template, quantity)
            for key, by_time in want.items():
                assert got[key].keys() == by_time.keys(), (template, panel["title"], key)
                for t, value in by_time.items():
                    assert got[key][t] == pytest.approx(value), (template, panel["title"], key, t)
            checked += 1
    assert checked >= sum(len(d["panels"]) for d in build_all("influxql").values())


def test_one_device_selected_returns_only_its_series(influxd: InfluxD) -> None:
    """Test that choosing one device (a multi-value variable: ``(name)``) narrows every query to it,
    and that another organisation's database answers its own devices only."""
    now = time.time()
    _write(influxd, now)
    dashboard = build_all("influxql")["indoor-climate"]
    rng = GrafanaRange(round((now - 3 * 3600) * 1000), round(now * 1000))
    values: dict[str, Any] = {"org": "aarhus", "device": ["aarhus-pi-2"]}
    query = expand(dashboard["panels"][0]["targets"][0]["query"], dashboard, values, rng)
    assert '"device" =~ /^(aarhus-pi-2)$/' in query
    assert set(_series(influxd, query, database_for("aarhus"))) == {("aarhus-pi-2", "s1")}
    odense = resolve_variables(dashboard, lambda q: influxd.query(q, database_for("odense")))
    assert odense == {"org": "odense", "device": ["odense-pi-9"]}
    query = expand(dashboard["panels"][0]["targets"][0]["query"], dashboard, odense, rng)
    assert set(_series(influxd, query, database_for("odense"))) == {("odense-pi-9", "s1")}
