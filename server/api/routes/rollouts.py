"""Agent releases and staged rollouts (``server.agent_releases``, ``server.rollouts``), and opt-outs.

A global admin uploads a release (the wheel, as the request body) and starts a rollout of it;
devices fetch the wheel from ``GET /agent-releases/{version}/{filename}`` (public: the wheel is
this project's open code, and the agent checks it against the SHA-256 it was sent over its own
MQTT session). An organisation's admins opt the organisation, or one of its devices, out of
updates.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from server.agent_releases import BadRelease, add_release, release_by_version
from server.api.auth import AuthDep, not_found
from server.api.common import audit_change
from server.api.deps import ClockDep, ResourcesDep, SessionDep, SettingsDep
from server.api.routes.devices import DEVICE_ID
from server.rollouts import BadRollout, progress, start_rollout, stop_rollout, summary
from server.tables import AgentReleaseRow, DeviceRow, OrganisationRow, RolloutRow

__all__ = ["OptOut", "ReleasePublic", "RolloutCreate", "router"]

router = APIRouter(tags=["agent updates"])

VERSION = Annotated[str, Path(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$", description="e.g. 0.2.0")]


class ReleasePublic(BaseModel):
    """An agent release: the wheel the server serves and its SHA-256."""

    version: str
    filename: str
    sha256: str
    size: int
    created_at: float
    created_by: str
    url: str


def _public(row: AgentReleaseRow) -> ReleasePublic:
    return ReleasePublic(
        version=row.version,
        filename=row.filename,
        sha256=row.sha256,
        size=row.size,
        created_at=row.created_at,
        created_by=row.created_by,
        url=f"/api/v1/agent-releases/{row.version}/{row.filename}",
    )


@router.post("/agent-releases", status_code=201)
async def upload_release(
    request: Request,
    filename: Annotated[str, Query(max_length=128, description="iot_suitcase-<version>-py3-none-any.whl")],
    principal: AuthDep,
    session: SessionDep,
    clock: ClockDep,
) -> ReleasePublic:
    """Add an agent release: the request body is the wheel `make dist` built (global admins)."""
    principal.require_global_admin()
    data = await request.body()
    now = clock()
    try:
        row = add_release(session, filename, data, now, principal.label)
    except BadRelease as exc:
        status = 409 if "already released" in str(exc) else 422
        raise HTTPException(status_code=status, detail=str(exc)) from None
    session.flush()
    audit_change(session, principal, now, "create", "agent_release", row.version, None, sha256=row.sha256)
    session.commit()
    return _public(row)


@router.get("/agent-releases")
def list_releases(principal: AuthDep, session: SessionDep) -> list[ReleasePublic]:
    """Return the agent releases, newest first (global admins)."""
    principal.require_global_admin()
    rows = session.exec(select(AgentReleaseRow).order_by(col(AgentReleaseRow.id).desc())).all()
    return [_public(r) for r in rows]


@router.get("/agent-releases/{version}/{filename}")
def download_release(
    version: VERSION, filename: Annotated[str, Path(max_length=128)], session: SessionDep
) -> Response:
    """The release's wheel (public; the agent checks it against the SHA-256 it was offered)."""
    row = release_by_version(session, version)
    if row is None or row.filename != filename:
        raise not_found("agent release", f"{version}/{filename}", "GET /api/v1/agent-releases lists them")
    return Response(
        content=row.wheel,
        media_type="application/octet-stream",
        headers={"X-Checksum-Sha256": row.sha256, "Cache-Control": "public, max-age=31536000, immutable"},
    )


class RolloutCreate(BaseModel):
    """A rollout: which release, who goes first, how large the second ring is, how long to wait."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(max_length=32, description="a release's version")
    canaries: list[str] = Field(default_factory=list, max_length=100, description="device ids of ring 0")
    canary_count: int = Field(default=1, ge=1, le=100, description="ring 0's size when no canaries are named")
    share_percent: int = Field(default=25, ge=0, le=100, description="ring 1: this share of the others")
    deadline_s: float = Field(
        default=120.0, ge=5, le=3600, description="to report healthy, or be rolled back"
    )
    soak_s: float = Field(default=0.0, ge=0, le=7 * 86_400, description="wait after a ring before the next")
    ttl_s: float = Field(default=86_400.0, ge=60, le=7 * 86_400, description="an offer waits this long")


def _rollout(session: Session, rollout_id: int) -> RolloutRow:
    row = session.get(RolloutRow, rollout_id)
    if row is None:
        raise not_found("rollout", rollout_id, "GET /api/v1/rollouts lists them")
    return row


def _dispatch(request: Request, resources: Any, now: float) -> None:
    from server.device_commands import dispatch

    listener = getattr(request.app.state, "listener", None)
    if listener is not None:
        dispatch(resources.engine, listener, now, listener.owner)


@router.post("/rollouts", status_code=201)
def create_rollout(
    body: RolloutCreate,
    principal: AuthDep,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    clock: ClockDep,
    request: Request,
) -> dict[str, Any]:
    """Start a staged rollout of a release: the canaries are offered it now (global admins)."""
    principal.require_global_admin()
    release = release_by_version(session, body.version)
    if release is None:
        raise HTTPException(
            status_code=422,
            detail=f"no agent release {body.version!r}: upload it first (POST /api/v1/agent-releases)",
        )
    now = clock()
    try:
        rollout = start_rollout(
            session,
            release,
            now,
            base_url=settings.public_url,
            canaries=body.canaries,
            canary_count=body.canary_count,
            share_percent=body.share_percent,
            deadline_s=body.deadline_s,
            soak_s=body.soak_s,
            ttl_s=body.ttl_s,
            created_by=principal.label,
        )
    except BadRollout as exc:
        raise HTTPException(
            status_code=409 if "still running" in str(exc) else 422, detail=str(exc)
        ) from None
    audit_change(session, principal, now, "create", "rollout", rollout.id, None, version=release.version)
    session.commit()
    _dispatch(request, resources, now)
    return summary(progress(session, rollout))


@router.get("/rollouts")
def list_rollouts(
    principal: AuthDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[dict[str, Any]]:
    """Return the rollouts, newest first, with their progress (global admins)."""
    principal.require_global_admin()
    rows = session.exec(select(RolloutRow).order_by(col(RolloutRow.id).desc()).limit(limit)).all()
    return [summary(progress(session, r)) for r in rows]


@router.get("/rollouts/{rollout_id}")
def read_rollout(rollout_id: int, principal: AuthDep, session: SessionDep) -> dict[str, Any]:
    """Return one rollout: its rings, each device's state and reason, and its figures (global admins)."""
    principal.require_global_admin()
    return summary(progress(session, _rollout(session, rollout_id)))


@router.post("/rollouts/{rollout_id}/stop")
def stop(rollout_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep) -> dict[str, Any]:
    """Stop a running rollout: nothing more is offered; offers not sent yet are withdrawn (global admins)."""
    principal.require_global_admin()
    rollout = _rollout(session, rollout_id)
    if rollout.state != "running":
        raise HTTPException(status_code=409, detail=f"rollout {rollout_id} is {rollout.state}, not running")
    now = clock()
    stop_rollout(session, rollout, f"stopped by {principal.label}", now)
    audit_change(session, principal, now, "stop", "rollout", rollout_id, None)
    session.commit()
    return summary(progress(session, rollout))


class OptOut(BaseModel):
    """Whether a device, or an organisation's devices, take agent updates."""

    model_config = ConfigDict(extra="forbid")

    opt_out: bool


@router.put("/devices/{device}/updates")
def device_updates(
    device: DEVICE_ID, body: OptOut, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> OptOut:
    """Opt a device out of agent updates, or back in (its organisation's admins)."""
    row = session.get(DeviceRow, device)
    if row is None:
        raise not_found("device", device, "only enrolled devices take updates (GET /api/v1/devices)")
    principal.require(row.org_id, "admin", "device", device)
    row.updates_opt_out = body.opt_out
    session.add(row)
    audit_change(
        session, principal, clock(), "update", "device", device, row.org_id, updates_opt_out=body.opt_out
    )
    session.commit()
    return OptOut(opt_out=row.updates_opt_out)


@router.put("/orgs/{org_id}/updates")
def org_updates(
    org_id: int, body: OptOut, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> OptOut:
    """Opt every device of an organisation out of agent updates, or back in (its admins)."""
    principal.require(org_id, "admin", "organisation", org_id)
    org = session.get(OrganisationRow, org_id)
    if org is None:
        raise not_found("organisation", org_id)
    org.updates_opt_out = body.opt_out
    session.add(org)
    audit_change(
        session, principal, clock(), "update", "organisation", org_id, org_id, updates_opt_out=body.opt_out
    )
    session.commit()
    return OptOut(opt_out=org.updates_opt_out)
