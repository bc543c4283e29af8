"""Grafana's expansion of an InfluxQL dashboard query, done here as Grafana does it.

Grafana cannot run on this machine, so the dashboards' queries are expanded by this module and
run against the real influxd. The rules, each from Grafana's own code or docs:

- **Template variables** (``$org``, ``$device``; Grafana docs, "InfluxDB template variables").
  A query variable's options are the values its own query returns (``SHOW TAG VALUES ...``, run
  against the data source's database after expanding the variables it names), deduplicated and,
  with ``sort: 1``, sorted alphabetically. The current value is the dashboard's ``current`` if set,
  else the first option; "All" (``$__all``, no ``allValue``) stands for every option. In a raw
  InfluxQL query the InfluxDB data source formats a value with ``interpolateQueryStr``
  (public/app/plugins/datasource/influxdb/influx_query_model.ts): a variable that is neither
  ``multi`` nor ``includeAll`` is inserted as is; otherwise each value is regex-escaped
  (``escapeRegex``: ``\\ ^ $ * + ? . ( ) | [ ] { } /`` get a backslash) and the values are joined as
  ``(a|b)`` (parentheses even for one value). ``${name}`` is the same as ``$name``.
- **$timeFilter** (pkg/tsdb/influxdb/influxql/models/query.go, ``renderTimeFilter``):
  ``time >= {from}ms and time <= {to}ms``, the range's ends in epoch milliseconds.
- **$__interval** (``$interval`` too): the range divided by the panel's max data points (its width
  in pixels by default), rounded by ``rangeutil.roundInterval`` (packages/grafana-data/src/datetime/
  rangeutil.ts: 1 ms, 10 ms, ... 10 s, 15 s, 20 s, 30 s, 1 m, 2 m, 5 m, 10 m, 15 m, 20 m, 30 m, 1 h,
  2 h, 3 h, 6 h, 12 h, 1 d, 1 w, 30 d, 1 y by the thresholds below), never below the data source's
  or panel's min interval (1 ms when unset), and written by ``gtime.FormatInterval`` in the largest
  whole unit (``1d``, ``6h``, ``10m``, ``30s``, ``500ms``). ``$__interval_ms`` is it in ms.

Grafana's order (the backend's ``Query.Build``): variables first (frontend), then ``$timeFilter``,
``$interval``, ``$__interval_ms``, ``$__interval``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["GrafanaRange", "expand", "format_interval", "interval_ms", "resolve_variables", "round_interval"]

# rangeutil.roundInterval: (upper bound exclusive, result), both in ms.
_ROUND: tuple[tuple[float, int], ...] = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip
_YEAR_MS = 31536000000

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def round_interval(ms: float) -> int:
    """Grafana's ``roundInterval``: a raw interval in ms to a "nice" one."""
    for bound, result in _ROUND:
        if ms < bound:
            return result
    return _YEAR_MS


def format_interval(ms: int) -> str:
    """Grafana's ``gtime.FormatInterval``: the largest whole unit (y, d, h, m, s, ms)."""
    for unit, size in (("y", _YEAR_MS), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


@dataclass(frozen=True)
class GrafanaRange:
    """A dashboard time range in epoch ms and the panel's max data points."""

    from_ms: int
    to_ms: int
    max_data_points: int = 1000
    min_interval_ms: int = 1


def interval_ms(time_range: GrafanaRange) -> int:
    """Grafana's ``calculateInterval``: range / max data points, rounded, at least the min interval."""
    raw = (time_range.to_ms - time_range.from_ms) / time_range.max_data_points
    return max(round_interval(raw), time_range.min_interval_ms)


def _format(value: str | list[str], variable: dict[str, Any]) -> str:
    if not variable.get("multi") and not variable.get("includeAll"):
        return value if isinstance(value, str) else ",".join(value)
    values = [value] if isinstance(value, str) else value
    return "(" + "|".join(_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), v) for v in values) + ")"


def _substitute(text: str, variables: dict[str, dict[str, Any]], values: dict[str, str | list[str]]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            return match.group(0)  # a macro, or not a variable of this dashboard
        return _format(values[name], variables[name])

    return _VARIABLE.sub(one, text)


def resolve_variables(
    dashboard: dict[str, Any], run: Callable[[str], list[dict[str, Any]]]
) -> dict[str, str | list[str]]:
    """Give each template variable its value, in order, as Grafana does on loading the dashboard.

    ``run`` executes an InfluxQL query against the data source's database and returns its series.
    """
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    values: dict[str, str | list[str]] = {}
    for name, variable in variables.items():
        if variable["type"] == "textbox":  # a constant a person types: its current text
            values[name] = str((variable.get("current") or {}).get("value", variable.get("query", "")))
            continue
        assert variable["type"] == "query", f"variable {name}: only query and textbox variables are expanded"
        query = _substitute(variable["query"], variables, values)
        options: list[str] = []
        for series in run(query):
            column = series["columns"].index("value")
            options.extend(str(row[column]) for row in series.get("values", []))
        options = list(dict.fromkeys(options))
        if variable.get("sort") == 1:
            options.sort()
        current = (variable.get("current") or {}).get("value")
        if current in ("$__all", ["$__all"]) and variable.get("includeAll"):
            values[name] = options
        elif current:
            values[name] = current
        else:
            if not options:
                raise AssertionError(f"variable {name}: its query {query!r} returned no values")
            values[name] = [options[0]] if variable.get("multi") else options[0]
    return values


def expand(
    query: str, dashboard: dict[str, Any], values: dict[str, str | list[str]], time_range: GrafanaRange
) -> str:
    """Expand a panel's raw InfluxQL ``query`` as Grafana sends it to InfluxDB."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    text = _substitute(query, variables, values)
    ms = interval_ms(time_range)
    text = text.replace("$timeFilter", f"time >= {time_range.from_ms}ms and time <= {time_range.to_ms}ms")
    text = text.replace("$interval", format_interval(ms))
    text = text.replace("$__interval_ms", str(ms))
    text = text.replace("$__interval", format_interval(ms))
    assert "$" not in text.replace("$/", "").replace("/^", ""), f"unexpanded macro left in {text!r}"
    return text
