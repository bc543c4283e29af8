"""Build Grafana dashboard JSON, one dashboard per use-case template id.

A template's panels are its base quantities (:data:`TEMPLATE_QUANTITIES`) plus any quantity a
use-case naming the template lists; each panel carries the quantity's Grafana unit and, as lines,
the thresholds of every use-case that names the template. Queries read the schema of
:mod:`dashboards.schema`, in InfluxQL (InfluxDB 1.x) or Flux (InfluxDB 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from dashboards.errors import UnknownTemplate
from dashboards.schema import FIELD, Flavour, grafana_unit
from kits.catalog import Catalog, load_catalog
from kits.models import DashboardTemplate, Threshold
from kits.quantities import spec

__all__ = [
    "DATASOURCE_UID",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "SCHEMA_VERSION",
    "TEMPLATES",
    "TEMPLATE_DERIVED",
    "TEMPLATE_QUANTITIES",
    "TEMPLATE_TITLES",
    "TEMPLATE_VARIABLES",
    "DerivedPanel",
    "build_all",
    "build_dashboard",
    "dashboard_uid",
    "write_dashboards",
]

TEMPLATES: tuple[str, ...] = get_args(DashboardTemplate)
SCHEMA_VERSION = 39  # Grafana 10.4/11 dashboard JSON model
# Every organisation's data source has this uid (uids are unique per Grafana organisation), so
# one dashboard JSON serves every organisation and reads only that organisation's database.
DATASOURCE_UID = "suitcase-influxdb"
FOLDER_UID = "iot-suitcase"
FOLDER_TITLE = "IoT Suitcase"

TEMPLATE_TITLES: dict[str, str] = {
    "indoor-climate": "Indoor climate",
    "air-quality": "Air quality",
    "bin-fill": "Bin fill level",
    "counting": "Counting",
    "energy": "Energy",
    "vibration": "Vibration",
}

TEMPLATE_QUANTITIES: dict[str, tuple[str, ...]] = {
    "indoor-climate": ("temperature", "humidity", "pressure", "co2", "voc_index"),
    # humidity is there because PM sensors read high above ~85 %RH
    "air-quality": ("pm2_5", "pm10", "pm1_0", "humidity"),
    "bin-fill": ("distance",),
    "counting": ("passes",),
    "energy": ("voltage_a0", "voltage_a1", "voltage_a2", "voltage_a3"),
    "vibration": ("vibration_rms", "acceleration_x", "acceleration_y", "acceleration_z"),
}

# Counts per interval add up over a longer window; everything else is averaged.
_SUMMED = frozenset({"passes"})


@dataclass(frozen=True)
class DerivedPanel:
    """A derived quantity (kits/derived.py) that InfluxQL arithmetic can express, drawn first.

    ``select`` is the InfluxQL expression over one aggregate of ``source``'s readings, with the
    dashboard's constants (``TEMPLATE_VARIABLES``) as ``$name``; ``every`` the GROUP BY width
    (``$__interval``, or a fixed ``1h`` / ``1d`` for counts per hour and per local day, in the
    ``$tz`` time zone). ``compute(aggregate, constants)`` is the same arithmetic in Python: what
    the tests expect from a real InfluxDB. A dew point needs the temperature and the humidity of
    one moment, two measurements InfluxQL cannot join: it is on the server's pages only.
    """

    quantity: str
    source: str
    select: str
    every: str
    compute: Callable[[float, dict[str, float]], float]
    flux_map: str = ""


def _clamp(channel: int) -> tuple[DerivedPanel, DerivedPanel]:
    source = f"voltage_a{channel}"
    return (
        DerivedPanel(
            f"power_a{channel}",
            source,
            'mean("value") * $ratio_a_per_v * $mains_v / 1000',
            "$__interval",
            lambda m, c: m * c["ratio_a_per_v"] * c["mains_v"] / 1000,
            "r._value * float(v: ${ratio_a_per_v}) * float(v: ${mains_v}) / 1000.0",
        ),
        DerivedPanel(
            f"current_a{channel}",
            source,
            'mean("value") * $ratio_a_per_v',
            "$__interval",
            lambda m, c: m * c["ratio_a_per_v"],
            "r._value * float(v: ${ratio_a_per_v})",
        ),
    )


TEMPLATE_DERIVED: dict[str, tuple[DerivedPanel, ...]] = {
    "bin-fill": (
        DerivedPanel(
            "fill_level",
            "distance",
            '100 * ($depth_mm - mean("value")) / $depth_mm',
            "$__interval",
            lambda m, c: 100 * (c["depth_mm"] - m) / c["depth_mm"],
            "100.0 * (float(v: ${depth_mm}) - r._value) / float(v: ${depth_mm})",
        ),
    ),
    "energy": tuple(p for channel in range(4) for p in _clamp(channel)),
    "counting": (
        DerivedPanel("passes_per_hour", "passes", 'sum("value")', "1h", lambda m, c: m),
        DerivedPanel("passes_per_day", "passes", 'sum("value")', "1d", lambda m, c: m),
    ),
}

# The constants a template's derived panels use, with their defaults: a person sets them on the
# dashboard (one value for the dashboard; the server's pages take each device's own).
TEMPLATE_VARIABLES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "bin-fill": (("depth_mm", "Bin depth, sensor to bottom (mm)", "1000"),),
    "energy": (
        ("ratio_a_per_v", "Clamp ratio (A per V)", "30"),
        ("mains_v", "Mains voltage (V)", "230"),
    ),
    "counting": (("tz", "Time zone of the days", "Europe/Copenhagen"),),
}
_THRESHOLD_COLOURS = ("orange", "red", "purple", "dark-red")


def dashboard_uid(template: str) -> str:
    """Return the stable Grafana uid of a template's dashboard (at most 40 characters)."""
    return f"suitcase-{template}"


def _check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise UnknownTemplate(
            f"unknown dashboard template {template!r}: use one of {', '.join(TEMPLATES)} "
            "(the ids of kits.models.DashboardTemplate)"
        )


def _ds() -> dict[str, str]:
    return {"type": "influxdb", "uid": DATASOURCE_UID}


def _influxql(quantity: str) -> str:
    agg = "sum" if quantity in _SUMMED else "mean"
    return (
        f'SELECT {agg}("{FIELD}") FROM "{quantity}" '
        'WHERE ("org" =~ /^$org$/ AND "device" =~ /^$device$/) AND $timeFilter '
        'GROUP BY time($__interval), "device", "sensor" fill(null)'
    )


def _derived_influxql(panel: DerivedPanel) -> str:
    zone = " tz('$tz')" if panel.every == "1d" else ""
    return (
        f'SELECT {panel.select} FROM "{panel.source}" '
        'WHERE ("org" =~ /^$org$/ AND "device" =~ /^$device$/) AND $timeFilter '
        f'GROUP BY time({panel.every}), "device", "sensor" fill(null){zone}'
    )


def _derived_flux(panel: DerivedPanel) -> str:
    agg = "sum" if panel.source in _SUMMED else "mean"
    every = "v.windowPeriod" if panel.every == "$__interval" else panel.every
    lines = [
        *_flux(panel.source).splitlines()[:-1],
        f"  |> aggregateWindow(every: {every}, fn: {agg}, createEmpty: false)",
    ]
    if panel.flux_map:
        lines.append(f"  |> map(fn: (r) => ({{r with _value: {panel.flux_map}}}))")
    return "\n".join(lines)


def _flux(quantity: str) -> str:
    agg = "sum" if quantity in _SUMMED else "mean"
    return "\n".join(
        [
            "from(bucket: v.defaultBucket)",
            "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
            f'  |> filter(fn: (r) => r._measurement == "{quantity}" and r._field == "{FIELD}")',
            '  |> filter(fn: (r) => r.org == "${org}")',
            "  |> filter(fn: (r) => contains(value: r.device, set: ${device:json}))",
            '  |> keep(columns: ["_time", "_value", "device", "sensor"])',
            f"  |> aggregateWindow(every: v.windowPeriod, fn: {agg}, createEmpty: false)",
        ]
    )


def _target(quantity: str, flavour: Flavour, derived: DerivedPanel | None = None) -> dict[str, Any]:
    if flavour == "influxql":
        return {
            "refId": "A",
            "datasource": _ds(),
            "rawQuery": True,
            "query": _influxql(quantity) if derived is None else _derived_influxql(derived),
            "resultFormat": "time_series",
            "alias": "$tag_device $tag_sensor",
        }
    return {
        "refId": "A",
        "datasource": _ds(),
        "query": _flux(quantity) if derived is None else _derived_flux(derived),
    }


def _constants(template: str) -> list[dict[str, Any]]:
    """Textbox variables holding a template's derived panels' constants (a bin's depth...)."""
    return [
        {
            "type": "textbox",
            "name": name,
            "label": label,
            "query": default,
            "current": {"selected": False, "text": default, "value": default},
            "options": [{"selected": True, "text": default, "value": default}],
            "hide": 0,
        }
        for name, label, default in TEMPLATE_VARIABLES.get(template, ())
    ]


def _variables(flavour: Flavour) -> list[dict[str, Any]]:
    if flavour == "influxql":
        org_query = 'SHOW TAG VALUES WITH KEY = "org"'
        device_query = 'SHOW TAG VALUES WITH KEY = "device" WHERE "org" =~ /^$org$/'
    else:
        org_query = (
            'import "influxdata/influxdb/schema"\n'
            'schema.tagValues(bucket: v.defaultBucket, tag: "org", start: -90d)'
        )
        device_query = (
            'import "influxdata/influxdb/schema"\n'
            'schema.tagValues(bucket: v.defaultBucket, tag: "device", '
            'predicate: (r) => r.org == "${org}", start: -90d)'
        )
    common: dict[str, Any] = {"type": "query", "datasource": _ds(), "refresh": 2, "sort": 1, "hide": 0}
    return [
        {
            **common,
            "name": "org",
            "label": "Organisation",
            "query": org_query,
            "definition": org_query,
            "multi": False,
            "includeAll": False,
        },
        {
            **common,
            "name": "device",
            "label": "Device",
            "query": device_query,
            "definition": device_query,
            "multi": True,
            "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        },
    ]


def _thresholds(template: str, catalog: Catalog) -> dict[str, list[Threshold]]:
    found: dict[str, list[Threshold]] = {}
    for case_id in sorted(catalog.use_cases):
        case = catalog.use_cases[case_id]
        if case.dashboard == template:
            for threshold in case.thresholds:
                found.setdefault(threshold.quantity, []).append(threshold)
    return found


def _quantities(template: str, catalog: Catalog) -> list[str]:
    names = list(TEMPLATE_QUANTITIES[template])
    for case_id in sorted(catalog.use_cases):
        case = catalog.use_cases[case_id]
        if case.dashboard == template:
            names += [q for q in case.quantities if q not in names]
    return names


def _panel(
    panel_id: int,
    quantity: str,
    flavour: Flavour,
    thresholds: list[Threshold],
    x: int,
    y: int,
    derived: DerivedPanel | None = None,
) -> dict[str, Any]:
    info = spec(quantity)
    assert info is not None, quantity
    values: dict[float, list[str]] = {}
    for t in thresholds:
        values.setdefault(t.value, []).append(f"{t.label}" + (f" ({t.source})" if t.source else ""))
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    for i, value in enumerate(sorted(values)):
        steps.append({"color": _THRESHOLD_COLOURS[min(i, len(_THRESHOLD_COLOURS) - 1)], "value": value})
    summed = quantity in _SUMMED or info.summed
    how = "sum per interval" if summed else "mean per interval"
    if derived is not None:
        how = {"1h": "sum per clock hour", "1d": "sum per day in the $tz time zone"}.get(
            derived.every, f"computed from the mean of {derived.source} per interval: {derived.select}"
        )
    description = f"{info.label} ({info.unit or 'dimensionless'}), {how}, per device and sensor."
    if values:
        description += " Lines: " + "; ".join(
            f"{value:g}: {', '.join(labels)}" for value, labels in sorted(values.items())
        )
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": info.label,
        "description": description,
        "datasource": _ds(),
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": grafana_unit(quantity),
                "color": {"mode": "palette-classic"},
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {
                    "drawStyle": "bars" if summed else "line",
                    "spanNulls": False,
                    "showPoints": "never",
                    "thresholdsStyle": {"mode": "line" if values else "off"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [_target(quantity, flavour, derived)],
    }


def build_dashboard(
    template: str, flavour: Flavour = "influxql", catalog: Catalog | None = None
) -> dict[str, Any]:
    """Return the Grafana dashboard JSON model of a template.

    Args:
        template: a :data:`kits.models.DashboardTemplate` id, e.g. ``indoor-climate``.
        flavour: ``influxql`` (InfluxDB 1.x) or ``flux`` (InfluxDB 2).
        catalog: the catalogue whose use-cases give extra quantities and thresholds; the packaged
            one by default.

    Raises:
        UnknownTemplate: ``template`` is not a template id.
    """
    _check_template(template)
    if flavour not in ("influxql", "flux"):
        raise UnknownTemplate(f"unknown query flavour {flavour!r}: use influxql (InfluxDB 1.x) or flux")
    catalog = catalog if catalog is not None else load_catalog()
    thresholds = _thresholds(template, catalog)
    # What a person reads first (fill level, power and current, counts per hour and day), then the raw.
    wanted: list[tuple[str, DerivedPanel | None]] = [
        (d.quantity, d) for d in TEMPLATE_DERIVED.get(template, ())
    ] + [(q, None) for q in _quantities(template, catalog)]
    panels = [
        _panel(i + 1, q, flavour, thresholds.get(q, []), x=12 * (i % 2), y=8 * (i // 2), derived=d)
        for i, (q, d) in enumerate(wanted)
    ]
    cases = sorted(c.id for c in catalog.use_cases.values() if c.dashboard == template)
    return {
        "uid": dashboard_uid(template),
        "title": f"IoT Suitcase · {TEMPLATE_TITLES[template]}",
        "description": (
            f"Template {template!r} ({flavour}); use-cases: {', '.join(cases) or 'none yet'}. "
            "Built by `suitcase dashboards build`; edits in Grafana are overwritten on the next push."
        ),
        "tags": ["iot-suitcase", template, flavour],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": _variables(flavour) + _constants(template)},
        "panels": panels,
    }


def build_all(flavour: Flavour = "influxql", catalog: Catalog | None = None) -> dict[str, dict[str, Any]]:
    """Return every template's dashboard, by template id."""
    catalog = catalog if catalog is not None else load_catalog()
    return {t: build_dashboard(t, flavour, catalog) for t in TEMPLATES}


def write_dashboards(
    out: Path,
    flavour: Flavour = "influxql",
    templates: list[str] | None = None,
    catalog: Catalog | None = None,
) -> list[Path]:
    """Write ``{template}.json`` files into ``out`` (created if missing); return their paths."""
    catalog = catalog if catalog is not None else load_catalog()
    wanted = templates or list(TEMPLATES)
    for template in wanted:
        _check_template(template)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for template in wanted:
        path = out / f"{template}.json"
        dashboard = build_dashboard(template, flavour, catalog)
        path.write_text(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
