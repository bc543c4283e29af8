"""Grafana dashboards as code: one per use-case template (the use-case YAML's ``dashboard`` id).

``dashboards.schema`` states the InfluxDB schema the gateway writes (the contract the queries read),
``dashboards.build`` turns a template id into Grafana dashboard JSON, ``dashboards.push`` provisions
organisations, data sources and dashboards through Grafana's HTTP API. See ``dashboards/README.md``.
"""

from __future__ import annotations

__all__: list[str] = []
