"""Errors of the dashboards part, rooted at :class:`kits.errors.SuitcaseError`."""

from __future__ import annotations

from kits.errors import ConfigError, SuitcaseError

__all__ = ["GrafanaAuthError", "GrafanaConflict", "GrafanaError", "GrafanaUnreachable", "UnknownTemplate"]


class UnknownTemplate(ConfigError):
    """A dashboard template id that :data:`kits.models.DashboardTemplate` does not know."""


class GrafanaError(SuitcaseError):
    """Grafana refused or failed a provisioning request."""


class GrafanaUnreachable(GrafanaError):
    """No HTTP answer from Grafana (connection refused, DNS, timeout)."""


class GrafanaAuthError(GrafanaError):
    """Grafana answered 401 or 403: wrong or too weak credentials."""


class GrafanaConflict(GrafanaError):
    """Grafana answered 409 or 412: something of the same name or a newer version is in the way."""
