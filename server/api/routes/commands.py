"""Commands to a device (``server.device_commands``): give one, list the device's history, read one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from server.api.auth import AuthDep, Principal, not_found
from server.api.common import audit_change
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.api.routes.devices import DEVICE_ID
from server.device_commands import (
    COMMANDS,
    DEFAULT_TTL_S,
    MAX_TTL_S,
    SERVER_ONLY,
    BadCommand,
    dispatch,
    queue_command,
)
from server.tables import DeviceCommandRow, DeviceRow

__all__ = ["CommandCreate", "CommandPublic", "router"]

router = APIRouter(tags=["commands"])


class CommandCreate(BaseModel):
    """A command to give a device: its name, its arguments, how long it may wait."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=32, description=f"one of {', '.join(COMMANDS)}")
    args: dict[str, Any] = Field(default_factory=dict, description="the command's arguments")
    ttl_s: float = Field(
        default=DEFAULT_TTL_S,
        ge=1,
        le=MAX_TTL_S,
        description="seconds the command may wait (device offline) and be unanswered before it expires",
    )


class CommandPublic(BaseModel):
    """A command and its state: queued, sent, answered, failed or expired, with the device's reply."""

    command_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    state: str
    created_at: float
    created_by: str
    expires_at: float
    sent_at: float | None
    answered_at: float | None
    reply: Any
    error: str | None
    attempts: int

    @classmethod
    def of(cls, row: DeviceCommandRow) -> CommandPublic:
        return cls.model_validate(row.model_dump())


def command_device(session: Session, principal: Principal, device: str, role: str) -> DeviceRow:
    """The registered device ``device`` if the caller has ``role`` in its organisation (else 404/403)."""
    row = session.get(DeviceRow, device)
    if row is None:
        raise not_found("device", device, "only enrolled devices take commands (GET /api/v1/devices)")
    principal.require(row.org_id, role, "device", device)
    return row


@router.post("/devices/{device}/commands", status_code=201)
def give_command(
    device: DEVICE_ID,
    body: CommandCreate,
    principal: AuthDep,
    session: SessionDep,
    resources: ResourcesDep,
    clock: ClockDep,
    request: Request,
) -> CommandPublic:
    """Queue a command for the device; it is sent at once when the device is online, else when it
    comes back (until ``ttl_s``). Poll ``GET .../commands/{command_id}`` for the reply."""
    row = command_device(session, principal, device, "operator")
    if body.name in SERVER_ONLY:
        raise HTTPException(
            status_code=422,
            detail=f"{body.name} commands come from a rollout only: POST /api/v1/rollouts (global admins)",
        )
    now = clock()
    try:
        command = queue_command(
            session, row, body.name, body.args, now, ttl_s=body.ttl_s, created_by=principal.label
        )
    except BadCommand as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    audit_change(session, principal, now, "command", "device", device, row.org_id, name=body.name)
    session.commit()
    listener = getattr(request.app.state, "listener", None)
    if listener is not None and row.online:
        dispatch(resources.engine, listener, now, listener.owner, device)
        session.refresh(command)
    return CommandPublic.of(command)


@router.get("/devices/{device}/commands")
def list_commands(
    device: DEVICE_ID,
    principal: AuthDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    name: Annotated[str | None, Query(max_length=32, description="only commands of this name")] = None,
) -> list[CommandPublic]:
    """Return the device's commands, newest first, with their state and reply."""
    command_device(session, principal, device, "viewer")
    query = select(DeviceCommandRow).where(DeviceCommandRow.device_id == device)
    if name is not None:
        query = query.where(DeviceCommandRow.name == name)
    rows = session.exec(query.order_by(col(DeviceCommandRow.id).desc()).limit(limit)).all()
    return [CommandPublic.of(r) for r in rows]


@router.get("/devices/{device}/commands/{command_id}")
def read_command(
    device: DEVICE_ID,
    command_id: Annotated[str, Path(max_length=64)],
    principal: AuthDep,
    session: SessionDep,
) -> CommandPublic:
    """Return one command of the device with its state and reply."""
    command_device(session, principal, device, "viewer")
    row = session.exec(
        select(DeviceCommandRow).where(
            DeviceCommandRow.command_id == command_id, DeviceCommandRow.device_id == device
        )
    ).first()
    if row is None:
        hint = f"list the device's commands: GET /api/v1/devices/{device}/commands"
        raise not_found("command", command_id, hint)
    return CommandPublic.of(row)
