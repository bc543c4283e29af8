"""The versioned configuration of a device (``server.device_config``): its versions, one version
with what changed from the one before, and a new version (pushed to the device with ``config``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from server.api.auth import AuthDep, not_found
from server.api.common import audit_change
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.api.routes.commands import CommandPublic, command_device
from server.api.routes.devices import DEVICE_ID
from server.device_commands import dispatch
from server.device_config import SECTIONS, BadConfig, diff, new_version, push
from server.tables import DeviceConfigRow

__all__ = ["ConfigVersionCreate", "ConfigVersionPublic", "router"]

router = APIRouter(tags=["device config"])

VERSION = Annotated[int, Path(ge=1, le=2**31 - 1, description="the config version")]


class ConfigVersionCreate(BaseModel):
    """A new version: the sections that change (each whole), a note, and whether to push it now."""

    model_config = ConfigDict(extra="forbid")

    sections: dict[str, Any] = Field(description=f"any of {', '.join(SECTIONS)}, each given whole")
    note: str = Field(default="", max_length=500)
    push: bool = Field(default=True, description="send it to the device with the config command")


class ConfigVersionPublic(BaseModel):
    """A version of the device's configuration, what changed from the one before, and whether the
    device has it in force (``applied``: its meta or its reply says so)."""

    device_id: str
    version: int
    body: dict[str, Any]
    created_at: float
    created_by: str
    note: str
    applied: bool
    changes: list[dict[str, Any]]
    command: CommandPublic | None = None


def _version(session: Session, device: str, version: int) -> DeviceConfigRow | None:
    return session.exec(
        select(DeviceConfigRow).where(DeviceConfigRow.device_id == device, DeviceConfigRow.version == version)
    ).first()


def _public(
    session: Session, row: DeviceConfigRow, applied: int | None, against: int | None = None
) -> ConfigVersionPublic:
    other = _version(session, row.device_id, against if against is not None else row.version - 1)
    return ConfigVersionPublic(
        device_id=row.device_id,
        version=row.version,
        body=row.body,
        created_at=row.created_at,
        created_by=row.created_by,
        note=row.note,
        applied=applied == row.version,
        changes=diff(other.body if other else None, row.body),
    )


@router.get("/devices/{device}/config/versions")
def list_versions(
    device: DEVICE_ID,
    principal: AuthDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[ConfigVersionPublic]:
    """Return the device's config versions, newest first, each with what changed from the one before."""
    row = command_device(session, principal, device, "viewer")
    rows = session.exec(
        select(DeviceConfigRow)
        .where(DeviceConfigRow.device_id == device)
        .order_by(col(DeviceConfigRow.version).desc())
        .limit(limit)
    ).all()
    return [_public(session, r, row.config_version) for r in rows]


@router.get("/devices/{device}/config/versions/{config_version}")
def read_version(
    device: DEVICE_ID,
    config_version: VERSION,
    principal: AuthDep,
    session: SessionDep,
    against: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="diff against this version")] = None,
) -> ConfigVersionPublic:
    """Return one config version, with what changed from the one before (or from ``against``)."""
    row = command_device(session, principal, device, "viewer")
    found = _version(session, device, config_version)
    if found is None or (against is not None and _version(session, device, against) is None):
        missing = config_version if found is None else against
        raise not_found("config version", missing, f"list them: GET /api/v1/devices/{device}/config/versions")
    return _public(session, found, row.config_version, against)


@router.post("/devices/{device}/config/versions", status_code=201)
def create_version(
    device: DEVICE_ID,
    body: ConfigVersionCreate,
    principal: AuthDep,
    session: SessionDep,
    resources: ResourcesDep,
    clock: ClockDep,
    request: Request,
) -> ConfigVersionPublic:
    """Make the device's next config version from the newest with ``sections`` replaced; with
    ``push`` (default) send it with the ``config`` command (queued while the device is offline)."""
    row = command_device(session, principal, device, "operator")
    now = clock()
    try:
        version = new_version(session, row, body.sections, now, created_by=principal.label, note=body.note)
        command = push(session, row, version.version, now, created_by=principal.label) if body.push else None
    except BadConfig as exc:
        session.rollback()
        raise HTTPException(status_code=422, detail=str(exc)) from None
    audit_change(
        session,
        principal,
        now,
        "configure",
        "device",
        device,
        row.org_id,
        version=version.version,
        sections=sorted(body.sections),
    )
    session.commit()
    listener = getattr(request.app.state, "listener", None)
    if command is not None and listener is not None and row.online:
        dispatch(resources.engine, listener, now, listener.owner, device)
        session.refresh(command)
    public = _public(session, version, row.config_version)
    public.command = CommandPublic.of(command) if command is not None else None
    return public
