"""Response models shared by the device and reading routes, and the 422 helper."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from kits.quantities import spec as quantity_spec
from kits.wire import Record
from server.timeutil import iso

__all__ = ["ReadingPublic", "View", "ViewQuery", "invalid"]

View = Literal["read", "raw"]
# How readings are read: as a person reads them, or only what the sensors sent (``server.derived``).
ViewQuery = Annotated[
    View,
    Query(
        description="read: the readings plus the derived quantities of their deployment (fill level, "
        "current and power, dew point, counts per hour and day); raw: only what the sensors sent"
    ),
]


class ReadingPublic(BaseModel):
    """One reading: ``time`` in UTC epoch seconds (as on the wire) and ``time_iso`` in ISO 8601."""

    sensor: str
    quantity: str
    unit: str | None
    time: float
    time_iso: str
    value: float

    @classmethod
    def of(cls, record: Record) -> ReadingPublic:
        """Return the public form of ``record``."""
        spec = quantity_spec(record.quantity)
        return cls(
            sensor=record.sensor,
            quantity=record.quantity,
            unit=spec.unit if spec else None,
            time=record.time,
            time_iso=iso(record.time),
            value=record.value,
        )


def invalid(
    field: str | tuple[str, ...], message: str, value: object, *, where: str = "query"
) -> RequestValidationError:
    """Return a 422 error shaped like FastAPI's own validation errors, for one parameter.

    ``field`` is a name, or a path into the body such as ``("use_case", "kit_profile")``.
    """
    path = field if isinstance(field, tuple) else (field,)
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, *path), "msg": message, "input": value}]
    )
