"""A device's readings in a time range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from kits.quantities import DERIVED_QUANTITIES, QUANTITIES
from kits.wire import MAX_FUTURE_SKEW_S
from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, SessionDep, StoreDep
from server.api.routes.devices import DEVICE_ID, check_device_access, require_device
from server.api.schemas import ReadingPublic, ViewQuery, invalid
from server.derived import devices_read
from server.timeutil import iso, parse_time

__all__ = ["DEFAULT_SPAN_S", "MAX_LIMIT", "MAX_SPAN_S", "ReadingsPublic", "router"]

router = APIRouter(tags=["readings"])

DEFAULT_SPAN_S = 3600.0
MAX_SPAN_S = 366 * 86400.0
MAX_LIMIT = 100_000
_TIME_HELP = "ISO 8601 (2024-06-10T06:13:20Z; UTC if no offset) or UTC epoch seconds"


class ReadingsPublic(BaseModel):
    """Readings of a device with ``start <= time < end``, oldest first.

    ``truncated`` is true when ``limit`` cut the list: ask again from the last ``time``.
    """

    device: str
    start: float
    start_iso: str
    end: float
    end_iso: str
    count: int
    truncated: bool
    readings: list[ReadingPublic]


def _time(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise invalid(name, str(exc), text) from None


@router.get("/devices/{device}/readings")
def readings(
    device: DEVICE_ID,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    clock: ClockDep,
    start: Annotated[str | None, Query(description=f"from (inclusive); {_TIME_HELP}")] = None,
    end: Annotated[str | None, Query(description=f"until (exclusive); {_TIME_HELP}")] = None,
    sensor: Annotated[
        str | None, Query(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$", description="sensor name, e.g. bme280")
    ] = None,
    quantity: Annotated[str | None, Query(description="quantity, e.g. temperature")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10_000,
    view: ViewQuery = "read",
) -> ReadingsPublic:
    """Return ``device``'s readings in ``[start, end)``, by default the last hour.

    Without ``end``, the range runs to now plus the clock skew the gateway accepts
    (``kits.wire.MAX_FUTURE_SKEW_S``), so readings of a device whose clock is slightly ahead show.
    With ``view=read`` the derived quantities of the deployment the device is in now are read too.
    """
    start_t, end_t = _time("start", start), _time("end", end)
    now = clock()
    if start_t is None:
        start_t = (end_t if end_t is not None else now) - DEFAULT_SPAN_S
    if end_t is None:
        # Up to "now" as the gateway sees it: it accepts readings from clocks slightly ahead.
        end_t = now + MAX_FUTURE_SKEW_S
    if end_t <= start_t:
        raise invalid(
            "end",
            f"end ({iso(end_t)}) must be after start ({iso(start_t)}): swap them or widen the range",
            end,
        )
    if end_t - start_t > MAX_SPAN_S:
        raise invalid(
            "end",
            f"the range of {(end_t - start_t) / 86400:.1f} days is over the limit of 366 days: "
            "ask for a year at a time",
            end,
        )
    known = [*QUANTITIES, *DERIVED_QUANTITIES] if view == "read" else list(QUANTITIES)
    if quantity is not None and quantity not in known:
        raise invalid(
            "quantity",
            f"quantity {quantity!r} is unknown: use one of {', '.join(known)}",
            quantity,
        )
    if not principal.sees_all():
        principal.require_user()
    seen = require_device(store, device, reveal=principal.sees_all())
    check_device_access(principal, seen.org, device)
    reader = devices_read(session, [(seen.org, device)], now).reader(store) if view == "read" else store
    records = reader.readings(seen.org, device, start_t, end_t, sensor=sensor, quantity=quantity, limit=limit)
    return ReadingsPublic(
        device=device,
        start=start_t,
        start_iso=iso(start_t),
        end=end_t,
        end_iso=iso(end_t),
        count=len(records),
        truncated=len(records) == limit,
        readings=[ReadingPublic.of(record) for record in records],
    )
