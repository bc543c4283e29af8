"""Tests of dashboards.build: one valid Grafana dashboard per template, on the gateway's schema."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from dashboards.build import (
    DATASOURCE_UID,
    TEMPLATE_QUANTITIES,
    TEMPLATE_VARIABLES,
    TEMPLATES,
    build_all,
    build_dashboard,
    dashboard_uid,
    write_dashboards,
)
from dashboards.errors import UnknownTemplate
from dashboards.schema import FIELD, GRAFANA_UNITS, TAGS, database_for, grafana_unit
from kits.catalog import CATALOG_DIR, load_catalog
from kits.models import DashboardTemplate
from kits.quantities import DERIVED_QUANTITIES, QUANTITIES

# Grafana unit ids (packages/grafana-data/src/valueFormats/categories.ts) the mapping may use.
KNOWN_GRAFANA_UNITS = {
    "celsius", "humidity", "pressurehpa", "ppm", "conμgm3", "lux", "lengthmm", "accMS2", "volt",
    "short", "none", "percent",
    "amp", "kwatt",  # Grafana's energy units (packages/grafana-data/src/valueFormats/categories.ts)
}  # fmt: skip


def _panels(flavour: str) -> list[tuple[str, dict]]:
    return [(t, p) for t, d in build_all(flavour).items() for p in d["panels"]]  # type: ignore[arg-type]


def test_every_template_id_has_a_dashboard() -> None:
    """Test that the templates are exactly kits.models.DashboardTemplate and each has quantities."""
    assert set(TEMPLATES) == set(DashboardTemplate.__args__)  # type: ignore[attr-defined]
    assert set(TEMPLATE_QUANTITIES) == set(TEMPLATES)
    for template in TEMPLATES:
        assert all(q in QUANTITIES for q in TEMPLATE_QUANTITIES[template])


@pytest.mark.parametrize("flavour", ["influxql", "flux"])
def test_dashboards_are_valid_grafana_json(flavour: str) -> None:
    """Test that each dashboard has a stable uid, unique panel ids, unclipped grid, one data source."""
    for template, dash in build_all(flavour).items():  # type: ignore[arg-type]
        assert dash["uid"] == dashboard_uid(template) and len(dash["uid"]) <= 40
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", dash["uid"])
        assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
        assert "id" not in dash and "version" not in dash
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)) and ids
        cells: set[tuple[int, int]] = set()
        for panel in dash["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{template}: panel {panel['id']} overlaps another"
            cells |= mine
            assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
            assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])
        names = [v["name"] for v in dash["templating"]["list"]]
        assert names == ["org", "device"] + [n for n, _, _ in TEMPLATE_VARIABLES.get(template, ())]
        json.dumps(dash)  # serialisable
        assert build_dashboard(template, flavour) == dash  # type: ignore[arg-type]  # deterministic


def test_influxql_queries_read_only_the_gateway_schema() -> None:
    """Test that InfluxQL names only a quantity measurement, the value field and the stable tags."""
    for template, panel in _panels("influxql"):
        (target,) = panel["targets"]
        query = target["query"]
        identifiers = set(re.findall(r'"([^"]+)"', query))
        measurement = re.search(r'FROM "([^"]+)"', query)
        assert measurement and measurement.group(1) in QUANTITIES
        assert identifiers <= {measurement.group(1), FIELD, *TAGS}, (template, query)
        # counts per hour and per day group by a fixed width; everything else by Grafana's interval
        assert "$timeFilter" in query and re.search(r"GROUP BY time\((\$__interval|1h|1d)\)", query)
        assert target["rawQuery"] is True and target["resultFormat"] == "time_series"


def test_flux_queries_read_only_the_gateway_schema() -> None:
    """Test that Flux filters by measurement, field value and the stable tags, from the org bucket."""
    for _, panel in _panels("flux"):
        (target,) = panel["targets"]
        query = target["query"]
        assert query.startswith("from(bucket: v.defaultBucket)")
        columns = set(re.findall(r"r\.(\w+)", query))
        assert columns <= {"_measurement", "_field", "_value", *TAGS}  # _value: a derived panel's map
        assert re.search(r'r\._measurement == "(\w+)"', query).group(1) in QUANTITIES  # type: ignore[union-attr]
        assert f'r._field == "{FIELD}"' in query
        assert "v.timeRangeStart" in query and re.search(r"every: (v\.windowPeriod|1h|1d),", query)


def test_every_quantity_has_a_grafana_unit() -> None:
    """Test that each registered quantity maps to a known Grafana unit id, and the panels use it."""
    for name in [*QUANTITIES, *DERIVED_QUANTITIES]:
        assert grafana_unit(name) in KNOWN_GRAFANA_UNITS
    assert set(GRAFANA_UNITS.values()) <= KNOWN_GRAFANA_UNITS
    assert grafana_unit("temperature") == "celsius" and grafana_unit("pm2_5") == "conμgm3"
    for _, panel in _panels("influxql"):
        assert panel["fieldConfig"]["defaults"]["unit"] in KNOWN_GRAFANA_UNITS


def _catalog_with_only(tmp_path: Path, *use_cases: str) -> Path:
    """A copy of the catalogue holding only the named use-cases (the real one keeps growing)."""
    root = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for path in (root / "usecases").glob("*.yaml"):
        if path.stem not in use_cases:
            path.unlink()
    return root


def test_indoor_climate_draws_the_use_case_thresholds(tmp_path: Path) -> None:
    """Test that indoor-climate.yaml's thresholds become threshold lines on the right panels."""
    dash = build_dashboard(
        "indoor-climate", "influxql", load_catalog(_catalog_with_only(tmp_path, "indoor-climate"))
    )
    by_title = {p["title"]: p for p in dash["panels"]}
    temperature = by_title["Temperature"]["fieldConfig"]["defaults"]
    assert [s["value"] for s in temperature["thresholds"]["steps"]] == [None, 20, 24]
    assert temperature["custom"]["thresholdsStyle"]["mode"] == "line"
    assert "DS/EN 16798-1" in by_title["Temperature"]["description"]
    humidity = by_title["Relative humidity"]["fieldConfig"]["defaults"]
    assert [s["value"] for s in humidity["thresholds"]["steps"]] == [None, 60]
    assert by_title["Air pressure"]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "off"


def test_a_new_use_case_adds_its_quantities_and_thresholds(tmp_path: Path) -> None:
    """Test that a use-case naming a template adds its thresholds and extra quantities there."""
    root = _catalog_with_only(tmp_path)
    (root / "usecases" / "street-air.yaml").write_text(
        """id: street-air
title: Street air
summary: Fine particles along a school route.
kit_profile: starter
sensors: [bme280]
quantities: [pm2_5, pm10, particles_03um]
placement: [At 2.5 m on a lamp post.]
dashboard: air-quality
thresholds:
  - {quantity: pm2_5, value: 15, label: WHO 2021 24 h guideline, source: WHO AQG 2021}
  - {quantity: pm10, value: 45, label: WHO 2021 24 h guideline, source: WHO AQG 2021}
seed_lines: ["1-2"]
""",
        encoding="utf-8",
    )
    catalog = load_catalog(root)
    dash = build_dashboard("air-quality", "influxql", catalog)
    by_title = {p["title"]: p for p in dash["panels"]}
    assert [s["value"] for s in by_title["PM2.5"]["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None,
        15,
    ]
    assert [s["value"] for s in by_title["PM10"]["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None,
        45,
    ]
    assert "Particles > 0.3 µm per 0.1 L" in by_title
    assert "street-air" in dash["description"]


def test_counts_are_summed_and_the_rest_averaged() -> None:
    """Test that passes are summed per interval (bars) while other quantities are averaged."""

    def panel(template: str, title: str, flavour: str = "influxql") -> dict[str, Any]:
        panels = build_dashboard(template, flavour)["panels"]  # type: ignore[arg-type]
        found: dict[str, Any] = next(p for p in panels if p["title"] == title)
        return found

    passes = panel("counting", "Passes")
    assert passes["targets"][0]["query"].startswith('SELECT sum("value")')
    assert passes["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    assert "fn: sum" in panel("counting", "Passes", "flux")["targets"][0]["query"]
    assert panel("bin-fill", "Distance")["targets"][0]["query"].startswith('SELECT mean("value")')


def test_unknown_template_and_flavour_are_refused(tmp_path: Path) -> None:
    """Test that an unknown template id or flavour fails naming the valid ones."""
    with pytest.raises(UnknownTemplate, match="use one of indoor-climate, air-quality"):
        build_dashboard("air-qualty")
    with pytest.raises(UnknownTemplate, match="influxql"):
        build_dashboard("energy", "sql")  # type: ignore[arg-type]
    with pytest.raises(UnknownTemplate):
        write_dashboards(tmp_path / "out", templates=["energy", "nope"])
    assert not (tmp_path / "out").exists()


def test_write_dashboards_writes_one_file_per_template(tmp_path: Path) -> None:
    """Test that write_dashboards writes {template}.json files equal to build_dashboard."""
    paths = write_dashboards(tmp_path, "flux")
    assert sorted(p.name for p in paths) == sorted(f"{t}.json" for t in TEMPLATES)
    for path in paths:
        assert json.loads(path.read_text(encoding="utf-8")) == build_dashboard(path.stem, "flux")


def test_database_per_org() -> None:
    """Test that each organisation gets its own database name, valid unquoted in InfluxQL."""
    assert database_for("aarhus") == "suitcase_aarhus"
    assert database_for("city-of-odense") == "suitcase_city_of_odense"
    assert database_for("a-b") != database_for("ab")
