"""Devices seen in the store (registered or not) and their latest readings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel

from gateway.store import DeviceSeen, SqliteStore
from server.api.deps import ClockDep, SettingsDep, StoreDep
from server.api.schemas import ReadingPublic
from server.timeutil import iso

__all__ = ["DEVICE_ID", "DevicePublic", "DevicesPublic", "LatestPublic", "require_device", "router"]

router = APIRouter(tags=["devices"])

DEVICE_ID = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
        description="device id, e.g. aarhus-school7-k3f9",
    ),
]


class DevicePublic(BaseModel):
    """A device that has sent readings; ``stale`` when its newest reading is older than the limit."""

    org: str
    device: str
    first_seen: float
    first_seen_iso: str
    last_seen: float
    last_seen_iso: str
    readings: int
    age_s: float
    stale: bool


class DevicesPublic(BaseModel):
    """Every device seen, with the server's time so clients can show ages without clock skew."""

    data: list[DevicePublic]
    count: int
    now: float
    stale_after_s: float


class LatestPublic(BaseModel):
    """The newest reading of each sensor and quantity of a device."""

    org: str
    device: str
    now: float
    readings: list[ReadingPublic]


def _public(seen: DeviceSeen, now: float, stale_after_s: float) -> DevicePublic:
    age = max(0.0, now - seen.last_seen)
    return DevicePublic(
        org=seen.org,
        device=seen.device,
        first_seen=seen.first_seen,
        first_seen_iso=iso(seen.first_seen),
        last_seen=seen.last_seen,
        last_seen_iso=iso(seen.last_seen),
        readings=seen.readings,
        age_s=age,
        stale=age > stale_after_s,
    )


def require_device(store: SqliteStore, device: str) -> DeviceSeen:
    """Return the store's summary of ``device``.

    Raises:
        HTTPException: 404 naming some known devices when ``device`` has sent no reading.
    """
    seen = store.devices()
    for entry in seen:
        if entry.device == device:
            return entry
    names = [entry.device for entry in seen]
    known = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    raise HTTPException(
        status_code=404,
        detail=(
            f"device {device!r} has sent no readings: devices seen are {known} (GET /api/v1/devices)"
            if names
            else f"device {device!r} has sent no readings; no device has yet: start an edge agent "
            "with `suitcase edge run` or run `suitcase demo`"
        ),
    )


@router.get("/devices")
def list_devices(store: StoreDep, settings: SettingsDep, clock: ClockDep) -> DevicesPublic:
    """Return every device that has readings in the store, by org and device."""
    now = clock()
    data = [_public(seen, now, settings.stale_after_s) for seen in store.devices()]
    return DevicesPublic(data=data, count=len(data), now=now, stale_after_s=settings.stale_after_s)


@router.get("/devices/{device}/latest")
def latest(device: DEVICE_ID, store: StoreDep, clock: ClockDep) -> LatestPublic:
    """Return the newest reading of each sensor and quantity of ``device``."""
    seen = require_device(store, device)
    readings = [ReadingPublic.of(record) for record in store.latest(device)]
    return LatestPublic(org=seen.org, device=device, now=clock(), readings=readings)
