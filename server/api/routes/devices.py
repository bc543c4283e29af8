"""Devices seen in the store (registered or not) and their latest readings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel
from sqlmodel import col, select

from gateway.store import DeviceSeen, Reader
from server.api.auth import AuthDep, Principal, PrincipalDep, not_found
from server.api.common import audit_change
from server.api.deps import ClockDep, ResourcesDep, SessionDep, SettingsDep, StoreDep
from server.api.schemas import ReadingPublic, ViewQuery
from server.broker_admin import BrokerAdminError
from server.derived import devices_read
from server.fleet import registered_among, revoke_device
from server.tables import DeploymentDeviceRow, DeviceRow, OrganisationRow
from server.timeutil import iso
from server.web.render import org_zone

__all__ = [
    "DEVICE_ID",
    "DevicePublic",
    "DevicesPublic",
    "LatestPublic",
    "check_device_access",
    "require_device",
    "router",
]

router = APIRouter(tags=["devices"])

DEVICE_ID = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
        description="device id, e.g. aarhus-school7-k3f9",
    ),
]


class DevicePublic(BaseModel):
    """A device: registered (enrolled) or only seen in the store ("seen but unregistered").

    ``stale`` when its newest reading is older than the limit; ``online`` from its retained status.
    """

    org: str
    device: str
    first_seen: float | None
    first_seen_iso: str | None
    last_seen: float | None
    last_seen_iso: str | None
    readings: int
    age_s: float | None
    stale: bool
    registered: bool = False
    revoked: bool = False
    online: bool | None = None
    kit_id: int | None = None
    pi_index: int | None = None
    deployment_id: int | None = None
    agent_version: str | None = None
    backlog: int | None = None
    clock_synced: bool | None = None
    sensors: list[dict[str, Any]] = []
    missing: list[str] = []
    unexpected: list[str] = []
    healthy: bool | None = None


class DevicesPublic(BaseModel):
    """A page of devices (registered first, then seen but unregistered), with the server's time so
    clients can show ages without clock skew."""

    data: list[DevicePublic]
    count: int
    limit: int
    offset: int
    now: float
    stale_after_s: float


class LatestPublic(BaseModel):
    """The newest reading of each sensor and quantity of a device, with the derived quantities of
    its deployment (``view=read``), those a person reads first (``headline``, none: every one) first."""

    org: str
    device: str
    now: float
    readings: list[ReadingPublic]
    headline: list[str] | None = None


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


def require_device(store: Reader, device: str, *, reveal: bool = True) -> DeviceSeen:
    """Return the store's summary of ``device``.

    Raises:
        HTTPException: 404 naming some known devices (when ``reveal``) when ``device`` has sent no
            reading.
    """
    seen = store.devices()
    for entry in seen:
        if entry.device == device:
            return entry
    if not reveal:
        raise not_found("device", device)
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


def _registered(
    row: DeviceRow,
    org: str,
    seen: DeviceSeen | None,
    deployment: int | None,
    now: float,
    stale_after_s: float,
) -> DevicePublic:
    last = max(x for x in (row.last_seen, seen.last_seen if seen else None, 0.0) if x is not None) or None
    age = max(0.0, now - last) if last else None
    states = [s.get("state") for s in row.sensors]
    return DevicePublic(
        org=org,
        device=row.id,
        first_seen=seen.first_seen if seen else None,
        first_seen_iso=iso(seen.first_seen) if seen else None,
        last_seen=last,
        last_seen_iso=iso(last) if last else None,
        readings=seen.readings if seen else 0,
        age_s=age,
        stale=age is None or age > stale_after_s,
        registered=True,
        revoked=row.revoked_at is not None,
        online=row.online,
        kit_id=row.kit_id,
        pi_index=row.pi_index,
        deployment_id=deployment,
        agent_version=row.agent_version,
        backlog=row.backlog,
        clock_synced=row.clock_synced,
        sensors=row.sensors,
        missing=row.missing,
        unexpected=row.unexpected,
        healthy=(all(s == "ok" for s in states) and not row.missing) if row.meta_at is not None else None,
    )


def _visible_slugs(principal: Principal) -> set[str] | None:
    return None if principal.sees_all() else set(principal.slugs.values())


def check_device_access(principal: Principal, org: str, device: str) -> None:
    """Raise 401 (no credentials, closed server) or 404 (another organisation's device)."""
    if principal.kiosk_deployments is not None:
        raise HTTPException(status_code=404, detail=f"device {device!r}: kiosk tokens read deployments only")
    slugs = _visible_slugs(principal)
    if slugs is None:
        return
    principal.require_user()
    if org not in slugs:
        raise not_found("device", device)


@router.get("/devices")
def list_devices(
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    registered: Annotated[bool | None, Query(description="only enrolled (true) or only seen (false)")] = None,
    org: Annotated[str | None, Query(max_length=64, description="organisation slug")] = None,
    kit_id: int | None = None,
    online: bool | None = None,
) -> DevicesPublic:
    """Return the fleet: enrolled devices with their status, then devices seen but unregistered."""
    if not principal.sees_all():
        principal.require_user()
    if principal.kiosk_deployments is not None:
        raise HTTPException(status_code=403, detail="kiosk tokens read their deployments only")
    now = clock()
    slugs = _visible_slugs(principal)
    query = select(DeviceRow, OrganisationRow.slug).join(
        OrganisationRow, col(OrganisationRow.id) == DeviceRow.org_id
    )
    if slugs is not None:
        query = query.where(col(OrganisationRow.slug).in_(sorted(slugs)))
    if org is not None:
        query = query.where(OrganisationRow.slug == org)
    if kit_id is not None:
        query = query.where(DeviceRow.kit_id == kit_id)
    if online is not None:
        query = query.where(DeviceRow.online == online)
    from sqlalchemy import func

    total_registered = (
        0
        if registered is False
        else int(session.exec(select(func.count()).select_from(query.subquery())).one())
    )
    data: list[DevicePublic] = []
    if registered is not False and offset < total_registered:
        rows = session.exec(query.order_by(col(DeviceRow.id)).offset(offset).limit(limit)).all()
        ids = [row.id for row, _ in rows]
        links = session.exec(
            select(DeploymentDeviceRow.device_id, DeploymentDeviceRow.deployment_id).where(
                col(DeploymentDeviceRow.device_id).in_(ids), col(DeploymentDeviceRow.to_t).is_(None)
            )
        ).all()
        current = dict(links)
        # Only this page's devices from the store: 50 of 10,000 is one small read.
        seen_page = {s.device: s for s in store.devices(keys=[(slug, row.id) for row, slug in rows])}
        data = [
            _registered(row, slug, seen_page.get(row.id), current.get(row.id), now, settings.stale_after_s)
            for row, slug in rows
        ]
    unregistered_total = 0
    if registered is not True and kit_id is None and online is None:
        only = (
            org if org is not None else next(iter(slugs)) if slugs is not None and len(slugs) == 1 else None
        )
        visible = [
            s
            for s in (store.devices(only) if only is not None else store.devices())
            if (slugs is None or s.org in slugs) and (org is None or s.org == org)
        ]
        known = registered_among(session, [(s.org, s.device) for s in visible])
        extra = [s for s in visible if s.device not in known]
        unregistered_total = len(extra)
        skip = max(0, offset - total_registered)
        room = limit - len(data)
        data += (
            [_public(s, now, settings.stale_after_s) for s in extra[skip : skip + room]] if room > 0 else []
        )
    return DevicesPublic(
        data=data,
        count=total_registered + unregistered_total,
        limit=limit,
        offset=offset,
        now=now,
        stale_after_s=settings.stale_after_s,
    )


@router.get("/devices/{device}")
def read_device(
    device: DEVICE_ID,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> DevicePublic:
    """Return one device: its registry record and status, or its store summary when unregistered."""
    row = session.get(DeviceRow, device)
    now = clock()
    if row is not None:
        org = session.get(OrganisationRow, row.org_id)
        slug = org.slug if org else ""
        check_device_access(principal, slug, device)
        # Its organisation is known: read its summary only, not every device the store has seen.
        seen = next(iter(store.devices(keys=[(slug, device)])), None)
        link = session.exec(
            select(DeploymentDeviceRow.deployment_id).where(
                DeploymentDeviceRow.device_id == device, col(DeploymentDeviceRow.to_t).is_(None)
            )
        ).first()
        return _registered(row, slug, seen, link, now, settings.stale_after_s)
    seen = next((s for s in store.devices() if s.device == device), None)
    if seen is None:
        raise not_found("device", device)
    check_device_access(principal, seen.org, device)
    return _public(seen, now, settings.stale_after_s)


@router.delete("/devices/{device}")
def revoke(
    device: DEVICE_ID, principal: AuthDep, session: SessionDep, resources: ResourcesDep, clock: ClockDep
) -> DevicePublic:
    """Revoke a device: delete its broker client, revoke its tokens, take it out of its deployment."""
    row = session.get(DeviceRow, device)
    if row is None:
        raise not_found("device", device)
    principal.require(row.org_id, "operator", "device", device)
    now = clock()
    try:
        revoke_device(session, resources.broker, row, now)
    except BrokerAdminError as exc:
        session.rollback()
        raise HTTPException(status_code=503, detail=f"{exc}: the device is unchanged; try again") from exc
    audit_change(session, principal, now, "revoke", "device", device, row.org_id)
    session.commit()
    org = session.get(OrganisationRow, row.org_id)
    return _registered(row, org.slug if org else "", None, None, now, resources.settings.stale_after_s)


@router.get("/devices/{device}/latest")
def latest(
    device: DEVICE_ID,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    view: ViewQuery = "read",
) -> LatestPublic:
    """Return the newest reading of each sensor and quantity of ``device`` (with the derived
    quantities of the deployment it is in: ``view=read``)."""
    if not principal.sees_all():
        principal.require_user()
    seen = require_device(store, device, reveal=principal.sees_all())
    check_device_access(principal, seen.org, device)
    now = clock()
    key = (seen.org, device)
    if view == "raw":
        return LatestPublic(
            org=seen.org, device=device, now=now, readings=[ReadingPublic.of(r) for r in store.latest([key])]
        )
    read = devices_read(session, [key], now)
    records = read.latest(store, now, lambda org: org_zone(settings, org), [key])
    return LatestPublic(
        org=seen.org,
        device=device,
        now=now,
        readings=[ReadingPublic.of(r) for r in records],
        headline=read.of(*key).headline,
    )
