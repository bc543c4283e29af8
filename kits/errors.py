"""The one error hierarchy of IoT Suitcase.

Every error a person may see derives from :class:`SuitcaseError` and says what broke and what to
do about it. Library errors are translated at each boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "BadTopic",
    "BadValue",
    "CatalogError",
    "ConfigError",
    "DeviceMismatch",
    "MissingField",
    "PayloadNotJson",
    "PayloadShapeError",
    "PayloadTooLarge",
    "SensorError",
    "SuitcaseError",
    "TimeOutOfRange",
    "UnitMismatch",
    "UnknownQuantity",
    "UnknownUnit",
    "WireError",
]


class SuitcaseError(Exception):
    """Root of every error raised by IoT Suitcase code."""


class ConfigError(SuitcaseError):
    """A configuration file, environment variable or CLI argument is wrong."""


class CatalogError(ConfigError):
    """A kit profile or use-case YAML file in the catalogue is invalid."""


class SensorError(SuitcaseError):
    """A sensor did not answer or answered something impossible."""


class WireError(SuitcaseError):
    """An MQTT topic or payload breaks the wire contract (docs/architecture.md, "The wire").

    ``code`` is a stable short slug stored with dead letters and counted in metrics.
    """

    code = "invalid"


class BadTopic(WireError):
    code = "bad_topic"


class PayloadTooLarge(WireError):
    code = "oversize"


class PayloadNotJson(WireError):
    code = "not_json"


class PayloadShapeError(WireError):
    code = "bad_shape"


class MissingField(WireError):
    code = "missing_field"


class BadValue(WireError):
    code = "bad_value"


class UnknownQuantity(WireError):
    code = "unknown_quantity"


class UnknownUnit(WireError):
    code = "unknown_unit"


class UnitMismatch(WireError):
    code = "unit_mismatch"


class TimeOutOfRange(WireError):
    code = "bad_time"


class DeviceMismatch(WireError):
    code = "device_mismatch"
