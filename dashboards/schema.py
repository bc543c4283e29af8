"""The InfluxDB schema the gateway writes: the fixed contract every dashboard query reads.

One measurement per quantity (the name in :mod:`kits.quantities`, e.g. ``temperature``,
``pm2_5``); tags ``org``, ``device``, ``sensor`` and no others; one float field ``value``; the
reading's time is the point's timestamp. Each organisation's points go to its own InfluxDB 1.x
database or InfluxDB 2 bucket (:func:`database_for`), so a Grafana data source holding a read
credential for that database alone cannot see another organisation's data, even through Explore.
"""

from __future__ import annotations

from typing import Literal

from kits.quantities import spec

__all__ = [
    "FIELD",
    "FLAVOURS",
    "GRAFANA_UNITS",
    "TAGS",
    "Flavour",
    "database_for",
    "grafana_unit",
]

TAGS: tuple[str, ...] = ("org", "device", "sensor")
FIELD = "value"

# influxql: InfluxDB 1.x (or 2.x through its 1.x compatibility API) queried in InfluxQL;
# flux: InfluxDB 2.x queried in Flux.
Flavour = Literal["influxql", "flux"]
FLAVOURS: tuple[Flavour, ...] = ("influxql", "flux")

# SenML unit of kits/quantities.py -> Grafana unit id (Grafana's "Standard options > Unit").
GRAFANA_UNITS: dict[str | None, str] = {
    "Cel": "celsius",
    "%RH": "humidity",
    "hPa": "pressurehpa",
    "ppm": "ppm",
    "ug/m3": "conμgm3",
    "lx": "lux",
    "mm": "lengthmm",
    "m/s2": "accMS2",
    "V": "volt",
    "count": "short",
    "%": "percent",
    "A": "amp",
    "kW": "kwatt",
    None: "none",
}


def grafana_unit(quantity: str) -> str:
    """Return the Grafana unit id of a measured or derived quantity of :mod:`kits.quantities`.

    Raises:
        KeyError: the quantity or its unit has no mapping; add its unit to :data:`GRAFANA_UNITS`.
    """
    found = spec(quantity)
    if found is None:
        raise KeyError(quantity)
    return GRAFANA_UNITS[found.unit]


def database_for(org: str) -> str:
    """Return the InfluxDB 1.x database (and InfluxDB 2 bucket) holding ``org``'s readings.

    ``suitcase_`` plus the org slug with ``-`` as ``_`` (slugs have no ``_``, so names cannot
    collide), a name valid unquoted in InfluxQL. The gateway's InfluxDB sinks must write here.
    """
    return "suitcase_" + org.replace("-", "_")
