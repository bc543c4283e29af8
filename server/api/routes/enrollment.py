"""Enrollment without an engineer: claim codes on each Pi's label, and single-use enrollment codes.

The agent polls ``POST /claims/poll`` with its claim code and gets ``pending`` until a staff member
scans the label and binds it to a deployment (``POST /claims/bind``); the next poll returns the
device's config with its broker credentials, once. ``POST /enroll`` does the same in one step with
a single-use, expiring enrollment code (``suitcase edge enroll``). Failed guesses are limited per
client address.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import segno
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from kits.models import DeviceConfig
from server import audit
from server.api.auth import AuthDep, client_key
from server.api.common import audit_change
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.api.routes.deployments import get_deployment
from server.broker_admin import BrokerAdminError
from server.fleet import Issued, bind_device
from server.resources import Resources
from server.sealed import SealBroken, seal, unseal
from server.security import ENROLL_PREFIX, hash_secret, new_enrollment_code, normalise_code
from server.tables import DeploymentRow, EnrollmentCodeRow, KitPiRow, KitRow

__all__ = ["EnrolledDevice", "router"]

router = APIRouter(tags=["enrollment"])

CodeText = Annotated[str, Field(min_length=8, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PollBody(_Body):
    """The agent's poll. The agent (edge/claim.py) sends ``code``: the same key for claim and
    enrollment codes, so an ``EN-`` enrollment code is redeemed here too."""

    claim_code: CodeText = Field(validation_alias=AliasChoices("claim_code", "code"))
    agent: Annotated[str, Field(max_length=32)] = ""

    @property
    def text(self) -> str:
        return self.claim_code


class BindBody(_Body):
    claim_code: CodeText
    deployment_id: int
    interval_s: Annotated[float, Field(gt=0, le=86400)] | None = None


class EnrollBody(_Body):
    code: CodeText


class EnrollmentCodeCreate(_Body):
    deployment_id: int
    ttl_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None


class EnrollmentCodePublic(BaseModel):
    """A single-use code for ``suitcase edge enroll --server URL --code CODE``; shown this once."""

    code: str
    deployment_id: int
    expires_at: float


class QrBody(_Body):
    claim_code: CodeText
    format: Literal["svg", "png"] = "svg"


class EnrolledDevice(BaseModel):
    """What the agent receives once: its config (with broker credentials), topics, calibration,
    and an API token for the device."""

    config: DeviceConfig
    topics: dict[str, str]
    calibration: list[dict[str, Any]]
    token: str


class PollPublic(BaseModel):
    status: Literal["pending", "ready", "delivered"]
    message: str
    device: EnrolledDevice | None = None


class BindPublic(BaseModel):
    device_id: str
    deployment_id: int
    kit_id: int
    pi_index: int


def _guard(request: Request, resources: Resources, what: str) -> str:
    key = f"{what}:{client_key(request)}"
    wait = resources.guesses.retry_after(key)
    if wait:
        raise HTTPException(
            status_code=429,
            detail=f"too many wrong codes from your address: wait {wait:.0f} s and check the label's code",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    return key


def _pi_by_claim(session: Session, code: str) -> KitPiRow | None:
    pi = session.exec(
        select(KitPiRow).where(KitPiRow.claim_hash == hash_secret(normalise_code(code)))
    ).first()
    if pi is None or pi.claim_revoked_at is not None:
        return None
    return pi


def _enrolled(issued: Issued) -> EnrolledDevice:
    return EnrolledDevice(
        config=issued.config, topics=issued.topics, calibration=issued.calibration, token=issued.token
    )


@router.post("/claims/poll")
def poll(
    body: PollBody, request: Request, session: SessionDep, resources: ResourcesDep, clock: ClockDep
) -> PollPublic:
    """The agent asks, with its claim code, whether a staff member has bound it yet."""
    if normalise_code(body.text).startswith(ENROLL_PREFIX + "-"):
        device = _redeem(body.text, request, session, resources, clock())
        return PollPublic(status="ready", message="enrolled: start with this config", device=device)
    key = _guard(request, resources, "claim")
    pi = _pi_by_claim(session, body.text)
    if pi is None:
        resources.guesses.failed(key)
        raise HTTPException(
            status_code=404, detail="unknown or revoked claim code: check the label on the Pi"
        )
    if pi.pending is not None:
        sealed, pi.pending = pi.pending, None  # delivered once; a lost config is re-issued by binding again
        session.add(pi)
        session.commit()
        if float(sealed.get("expires_at", 0)) <= clock():
            return PollPublic(
                status="pending",
                message="the binding expired before this Pi collected its config: ask staff to scan "
                "the label and bind it again",
            )
        try:
            device = EnrolledDevice.model_validate(unseal(normalise_code(body.text), sealed))
        except SealBroken:
            return PollPublic(
                status="pending",
                message="the waiting config could not be opened with this code: ask staff to bind again",
            )
        return PollPublic(status="ready", message="bound: start with this config", device=device)
    if pi.device_id is not None:
        return PollPublic(
            status="delivered",
            message=f"already enrolled as {pi.device_id}: to enroll again, "
            "ask staff to bind this Pi again (that replaces its credentials)",
        )
    return PollPublic(status="pending", message="waiting for a staff member to scan the label and confirm")


@router.post("/claims/bind", status_code=201)
def bind(
    body: BindBody,
    request: Request,
    principal: AuthDep,
    session: SessionDep,
    resources: ResourcesDep,
    clock: ClockDep,
) -> BindPublic:
    """A staff member binds a scanned Pi to a deployment: the device and its credentials are made."""
    key = _guard(request, resources, "claim")
    pi = _pi_by_claim(session, body.claim_code)
    if pi is None:
        resources.guesses.failed(key)
        raise HTTPException(
            status_code=404, detail="unknown or revoked claim code: check the label on the Pi"
        )
    deployment = get_deployment(session, principal, body.deployment_id, "operator")
    kit = session.get(KitRow, pi.kit_id)
    assert kit is not None and kit.id is not None and deployment.id is not None
    if deployment.kit_id is not None and deployment.kit_id != kit.id:
        other = session.get(KitRow, deployment.kit_id)
        # A new kit has no deployment yet: the page offered only other kits' (say how to make one).
        raise HTTPException(
            status_code=409,
            detail=f"this Pi belongs to kit {kit.inventory_code}, and deployment {deployment.name!r} "
            f"uses kit {other.inventory_code if other is not None else deployment.kit_id}: pick a "
            f"deployment of kit {kit.inventory_code}, or make one (Use-cases, 'Deploy this', kit "
            f"{kit.inventory_code}) and confirm again",
        )
    from server.fleet import kit_org_ids, revoke_device
    from server.tables import DeviceRow

    if deployment.org_id not in kit_org_ids(session, kit):
        raise HTTPException(
            status_code=409, detail="the deployment's organisation neither owns nor borrows this kit"
        )
    now = clock()
    try:
        if pi.device_id is not None:
            old = session.get(DeviceRow, pi.device_id)
            if old is not None:
                revoke_device(session, resources.broker, old, now)
        issued = bind_device(
            session,
            resources.settings,
            resources.broker,
            deployment=deployment,
            kit=kit,
            pi_index=pi.pi_index,
            now=now,
            interval_s=body.interval_s,
        )
    except BrokerAdminError as exc:
        session.rollback()
        raise HTTPException(status_code=503, detail=f"{exc}: nothing was changed; try again") from exc
    pi.device_id = issued.device.id
    # Sealed to the claim code, which the registry keeps only hashed, and expiring: no readable
    # device secret waits at rest.
    pi.pending = seal(
        normalise_code(body.claim_code),
        _enrolled(issued).model_dump(mode="json"),
        {"expires_at": now + resources.settings.pending_ttl_s},
    )
    session.add(pi)
    audit_change(
        session,
        principal,
        now,
        "bind",
        "device",
        issued.device.id,
        deployment.org_id,
        kit=kit.id,
        pi_index=pi.pi_index,
        deployment=deployment.id,
    )
    session.commit()
    return BindPublic(
        device_id=issued.device.id, deployment_id=deployment.id, kit_id=kit.id, pi_index=pi.pi_index
    )


@router.post("/claims/qr", responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}}})
def claim_qr(body: QrBody, principal: AuthDep, session: SessionDep, resources: ResourcesDep) -> Response:
    """Return the QR label of a claim code (SVG or PNG): it opens the claim page on a phone."""
    pi = _pi_by_claim(session, body.claim_code)
    if pi is None:
        raise HTTPException(status_code=404, detail="unknown or revoked claim code")
    from server.api.routes.kits import get_kit

    get_kit(session, principal, pi.kit_id, "operator")
    code = normalise_code(body.claim_code)
    url = f"{resources.settings.public_url.rstrip('/')}/claim#code={code}"
    qr = segno.make(url, error="m")
    import io

    buffer = io.BytesIO()
    if body.format == "png":
        qr.save(buffer, kind="png", scale=8, border=2)
        return Response(buffer.getvalue(), media_type="image/png")
    qr.save(buffer, kind="svg", scale=4, border=2, title=code)
    return Response(buffer.getvalue(), media_type="image/svg+xml")


@router.post("/enrollment-codes", status_code=201)
def create_enrollment_code(
    body: EnrollmentCodeCreate,
    principal: AuthDep,
    session: SessionDep,
    resources: ResourcesDep,
    clock: ClockDep,
) -> EnrollmentCodePublic:
    """Make a single-use, expiring code for a Pi set up by hand (operators)."""
    deployment = get_deployment(session, principal, body.deployment_id, "operator")
    now = clock()
    code = new_enrollment_code()
    expires = now + (body.ttl_s or resources.settings.enrollment_code_ttl_s)
    session.add(
        EnrollmentCodeRow(
            code_hash=hash_secret(code),
            org_id=deployment.org_id,
            deployment_id=body.deployment_id,
            created_at=now,
            expires_at=expires,
            created_by=principal.label,
        )
    )
    audit_change(session, principal, now, "create", "enrollment_code", body.deployment_id, deployment.org_id)
    session.commit()
    return EnrollmentCodePublic(code=code, deployment_id=body.deployment_id, expires_at=expires)


@router.post("/enroll")
def enroll(
    body: EnrollBody, request: Request, session: SessionDep, resources: ResourcesDep, clock: ClockDep
) -> EnrolledDevice:
    """Trade a single-use enrollment code for the device's config and credentials."""
    return _redeem(body.code, request, session, resources, clock())


def _redeem(
    code: str, request: Request, session: Session, resources: Resources, now: float
) -> EnrolledDevice:
    key = _guard(request, resources, "enroll")
    row = session.exec(
        select(EnrollmentCodeRow).where(EnrollmentCodeRow.code_hash == hash_secret(normalise_code(code)))
    ).first()
    if row is None or row.used_at is not None or row.expires_at <= now:
        resources.guesses.failed(key)
        state = "unknown" if row is None else "already used" if row.used_at is not None else "expired"
        raise HTTPException(
            status_code=404, detail=f"the enrollment code is {state}: ask an operator for a new one"
        )
    deployment = session.get(DeploymentRow, row.deployment_id)
    if deployment is None or (deployment.ends_at is not None and deployment.ends_at <= now):
        raise HTTPException(
            status_code=409, detail="the code's deployment has ended: ask an operator for a new code"
        )
    kit = session.get(KitRow, deployment.kit_id) if deployment.kit_id is not None else None
    try:
        issued = bind_device(
            session,
            resources.settings,
            resources.broker,
            deployment=deployment,
            kit=kit,
            pi_index=None,
            now=now,
        )
    except BrokerAdminError as exc:
        session.rollback()
        raise HTTPException(status_code=503, detail=f"{exc}: the code is still valid; try again") from exc
    row.used_at, row.device_id = now, issued.device.id
    session.add(row)
    audit.record(
        session,
        at=now,
        actor=f"enrollment-code:{row.id}",
        actor_user_id=None,
        action="enroll",
        entity="device",
        entity_id=issued.device.id,
        org_id=row.org_id,
    )
    session.commit()
    return _enrolled(issued)
