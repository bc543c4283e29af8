"""Kits (physical suitcases), their Pis' claim codes, loans, kit return and calibration."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_
from sqlmodel import Session, col, select

from kits.models import KitProfile
from kits.quantities import QUANTITIES
from server.api.auth import AuthDep, Principal, not_found
from server.api.common import Page, PagingDep, audit_change, page, resolve_org
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.api.schemas import invalid
from server.broker_admin import BrokerAdminError
from server.calibration_push import push_calibration
from server.fleet import RESET_STEPS, active_loan, current_calibrations, kit_org_ids, return_kit
from server.models import KitProfilePublic, KitProfileRow
from server.security import hash_secret, new_claim_code
from server.tables import (
    ROLES,
    CalibrationRow,
    DeviceCommandRow,
    DeviceConfigRow,
    DeviceRow,
    KitPiRow,
    KitRow,
    LoanRow,
    OrganisationRow,
)

__all__ = ["KitCreate", "KitPublic", "KitUpdate", "get_kit", "router"]

router = APIRouter(tags=["kits"])

Condition = Literal["good", "worn", "damaged"]
KitStatus = Literal["in_stock", "on_loan", "deployed", "in_repair", "retired"]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="inventory code")]
SensorName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KitCreate(_Body):
    inventory_code: Code
    profile_id: Annotated[str, Field(max_length=64)]
    org_id: int | None = Field(default=None, description="owner; default: your only organisation")
    condition: Condition = "good"
    notes: Annotated[str, Field(max_length=2000)] = ""


class KitUpdate(_Body):
    condition: Condition | None = None
    status: KitStatus | None = None
    contents_check: dict[str, bool] | None = Field(
        default=None, description="bill-of-materials item -> present"
    )
    notes: Annotated[str, Field(max_length=2000)] | None = None


class KitPublic(BaseModel):
    id: int
    org_id: int
    inventory_code: str
    profile_id: str
    condition: str
    status: str
    contents_check: dict[str, Any]
    contents_checked_at: float | None
    contents_missing: list[str]
    notes: str
    created_at: float
    pis: list[dict[str, Any]]
    loan: dict[str, Any] | None


class ClaimCode(BaseModel):
    """A Pi's claim code: shown once; print it as a QR label (POST /api/v1/claims/qr)."""

    pi_index: int
    code: str
    claim_url: str


class KitCreated(KitPublic):
    claim_codes: list[ClaimCode]


class LoanCreate(_Body):
    org_id: int = Field(description="the borrowing organisation")
    borrower: Annotated[str, Field(min_length=1, max_length=200, description="contact person")]
    starts_at: float | None = Field(default=None, ge=0, le=1e10)
    due_at: float = Field(ge=0, le=1e10)
    notes: Annotated[str, Field(max_length=2000)] = ""


class LoanPublic(BaseModel):
    id: int
    kit_id: int
    owner_org_id: int
    org_id: int
    borrower: str
    starts_at: float
    due_at: float
    returned_at: float | None
    overdue: bool
    notes: str


class KitReturn(_Body):
    condition: Condition = "good"
    contents_check: dict[str, bool] | None = None
    notes: Annotated[str, Field(max_length=2000)] = ""


class ReturnPublic(BaseModel):
    """What the return did, and the steps to reset each Pi before the next loan."""

    kit: KitPublic
    loan_id: int | None
    deployments_ended: list[int]
    devices_revoked: list[str]
    tokens_revoked: int
    reset_steps: list[str]
    claim_codes: list[ClaimCode] = []
    """Every Pi's new claim code (the old ones were revoked by the return); shown this once."""


class CalibrationCreate(_Body):
    pi_index: int = Field(ge=1, le=64)
    sensor: SensorName
    quantity: str
    offset: float = Field(default=0.0, ge=-1e6, le=1e6)
    scale: float = Field(default=1.0, gt=0, le=1e6)
    calibrated_at: float | None = Field(default=None, ge=0, le=1e10)
    due_at: float | None = Field(default=None, ge=0, le=1e10)
    reference: Annotated[str, Field(max_length=500, description="reference instrument or method")] = ""


class CalibrationPublic(BaseModel):
    id: int
    kit_id: int
    pi_index: int
    sensor: str
    quantity: str
    offset: float
    scale: float
    calibrated_at: float
    due_at: float | None
    version: int
    reference: str
    created_by: str
    due: bool = False


class CalibrationDeliveryPublic(BaseModel):
    """A ``config`` command carrying a device config version, and so the Pi's calibration
    (``version`` = its highest calibration record), to a device of the kit.

    ``state`` is the command's (``server.device_commands``): queued (waits for the broker or for
    the device to come online), sent, answered (the device applied it), failed (refused, by the
    server or the device: see ``error``), expired (not answered in time, or replaced by a newer
    version before it was sent).
    """

    command_id: str
    device_id: str
    pi_index: int | None
    version: int
    config_version: int | None
    calibration: list[dict[str, Any]]
    state: str
    created_at: float
    sent_at: float | None
    replied_at: float | None
    error: str | None


class KitProfileCreate(_Body):
    """An organisation's own kit profile (the catalogue's are read-only)."""

    org_id: int | None = None
    profile: KitProfile


# ------------------------------------------------------------------------------------ helpers


def get_kit(session: Session, principal: Principal, kit_id: int, role: str = "viewer") -> KitRow:
    """Return a kit the caller may use with ``role`` (owner or current borrower).

    Raises:
        HTTPException: 404 when it does not exist or is not visible, 403 when the role is too weak.
    """
    kit = session.get(KitRow, kit_id)
    if kit is None:
        raise not_found("kit", kit_id)
    if principal.global_admin:
        return kit
    held = [o for o in kit_org_ids(session, kit) if principal.role_in(o) is not None]
    if not held:
        raise not_found("kit", kit_id)
    best = max(held, key=lambda o: ROLES.index(principal.role_in(o) or "viewer"))
    principal.require(best, role, "kit", kit_id)
    return kit


def _missing(kit: KitRow, profile: KitProfile | None) -> list[str]:
    if profile is None or not kit.contents_check:
        return []
    return [p.item for p in profile.bill_of_materials if kit.contents_check.get(p.item) is False]


def _loan_public(loan: LoanRow, now: float) -> LoanPublic:
    assert loan.id is not None
    return LoanPublic(
        id=loan.id,
        kit_id=loan.kit_id,
        owner_org_id=loan.owner_org_id,
        org_id=loan.org_id,
        borrower=loan.borrower,
        starts_at=loan.starts_at,
        due_at=loan.due_at,
        returned_at=loan.returned_at,
        overdue=loan.returned_at is None and loan.due_at < now,
        notes=loan.notes,
    )


def kit_public(session: Session, kit: KitRow, now: float) -> KitPublic:
    assert kit.id is not None
    profile_row = session.get(KitProfileRow, kit.profile_id)
    pis = session.exec(
        select(KitPiRow).where(KitPiRow.kit_id == kit.id).order_by(col(KitPiRow.pi_index))
    ).all()
    loan = active_loan(session, kit.id)
    return KitPublic(
        id=kit.id,
        org_id=kit.org_id,
        inventory_code=kit.inventory_code,
        profile_id=kit.profile_id,
        condition=kit.condition,
        status=kit.status,
        contents_check=kit.contents_check,
        contents_checked_at=kit.contents_checked_at,
        contents_missing=_missing(kit, profile_row.profile() if profile_row else None),
        notes=kit.notes,
        created_at=kit.created_at,
        pis=[
            {
                "pi_index": p.pi_index,
                "device_id": p.device_id,
                "claim_active": p.claim_hash is not None and p.claim_revoked_at is None,
            }
            for p in pis
        ],
        loan=_loan_public(loan, now).model_dump() if loan else None,
    )


def _claim_url(resources: Any, code: str) -> str:
    # The code goes in the fragment: browsers never send it to a server or a log.
    return f"{resources.settings.public_url.rstrip('/')}/claim#code={code}"


def _new_claim(resources: Any, pi: KitPiRow) -> ClaimCode:
    code = new_claim_code()
    pi.claim_hash, pi.claim_revoked_at = hash_secret(code), None
    return ClaimCode(pi_index=pi.pi_index, code=code, claim_url=_claim_url(resources, code))


# ------------------------------------------------------------------------------- kit profiles


@router.post("/kit-profiles", status_code=201)
def create_kit_profile(
    body: KitProfileCreate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> KitProfilePublic:
    """Add an organisation's own kit profile (operators); its id must not exist yet."""
    org = resolve_org(session, principal, body.org_id, "operator")
    if session.get(KitProfileRow, body.profile.id) is not None:
        raise HTTPException(
            status_code=409, detail=f"kit profile {body.profile.id!r} exists: pick another id"
        )
    spec = body.profile.model_dump(mode="json")
    row = KitProfileRow(
        id=body.profile.id, name=body.profile.name, pis=body.profile.pis, spec=spec, org_id=org.id
    )
    session.add(row)
    audit_change(session, principal, clock(), "create", "kit_profile", row.id, org.id)
    session.commit()
    return KitProfilePublic.from_row(row, [])


@router.delete("/kit-profiles/{profile_id}", status_code=204)
def delete_kit_profile(profile_id: str, principal: AuthDep, session: SessionDep, clock: ClockDep) -> None:
    """Delete an organisation's own kit profile that no kit uses (catalogue profiles are read-only)."""
    row = session.get(KitProfileRow, profile_id)
    if row is None:
        raise not_found("kit profile", profile_id)
    if row.org_id is None:
        raise HTTPException(
            status_code=403, detail="catalogue profiles are read-only: change the YAML and re-import"
        )
    principal.require(row.org_id, "operator", "kit profile", profile_id)
    if session.exec(select(KitRow).where(KitRow.profile_id == profile_id)).first():
        raise HTTPException(status_code=409, detail=f"kits use profile {profile_id!r}: retire them first")
    session.delete(row)
    audit_change(session, principal, clock(), "delete", "kit_profile", profile_id, row.org_id)
    session.commit()


# --------------------------------------------------------------------------------------- kits


@router.post("/kits", status_code=201)
def create_kit(
    body: KitCreate, principal: AuthDep, session: SessionDep, resources: ResourcesDep, clock: ClockDep
) -> KitCreated:
    """Register a suitcase; each of its Pis gets a claim code, shown this once."""
    org = resolve_org(session, principal, body.org_id, "operator")
    profile = session.get(KitProfileRow, body.profile_id)
    if profile is None or (profile.org_id is not None and profile.org_id != org.id):
        raise invalid(
            "profile_id",
            f"kit profile {body.profile_id!r} is unknown: see GET /api/v1/kit-profiles",
            body.profile_id,
            where="body",
        )
    if session.exec(select(KitRow).where(KitRow.inventory_code == body.inventory_code)).first():
        raise HTTPException(status_code=409, detail=f"inventory code {body.inventory_code!r} is taken")
    now = clock()
    assert org.id is not None
    kit = KitRow(
        org_id=org.id,
        inventory_code=body.inventory_code,
        profile_id=body.profile_id,
        condition=body.condition,
        notes=body.notes,
        created_at=now,
    )
    session.add(kit)
    session.flush()
    assert kit.id is not None
    codes = []
    for index in range(1, profile.pis + 1):
        pi = KitPiRow(kit_id=kit.id, pi_index=index)
        codes.append(_new_claim(resources, pi))
        session.add(pi)
    audit_change(session, principal, now, "create", "kit", kit.id, org.id, inventory_code=kit.inventory_code)
    session.commit()
    return KitCreated(**kit_public(session, kit, now).model_dump(), claim_codes=codes)


@router.get("/kits")
def list_kits(
    principal: AuthDep,
    session: SessionDep,
    paging: PagingDep,
    clock: ClockDep,
    status: KitStatus | None = None,
    profile_id: Annotated[str | None, Query(max_length=64)] = None,
    org_id: int | None = None,
) -> Page[KitPublic]:
    """Return the kits the caller's organisations own or borrow."""
    query = select(KitRow)
    if not principal.global_admin:
        orgs = sorted(principal.org_ids() or set())
        borrowed = select(LoanRow.kit_id).where(
            col(LoanRow.org_id).in_(orgs), col(LoanRow.returned_at).is_(None)
        )
        query = query.where(or_(col(KitRow.org_id).in_(orgs), col(KitRow.id).in_(borrowed)))
    if status:
        query = query.where(KitRow.status == status)
    if profile_id:
        query = query.where(KitRow.profile_id == profile_id)
    if org_id is not None:
        query = query.where(KitRow.org_id == org_id)
    rows, total = page(session, query, paging, col(KitRow.inventory_code))
    now = clock()
    return Page(data=[kit_public(session, k, now) for k in rows], count=total, **paging.model_dump())


@router.get("/kits/{kit_id}")
def read_kit(kit_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep) -> KitPublic:
    """Return one kit with its Pis and open loan."""
    return kit_public(session, get_kit(session, principal, kit_id), clock())


@router.patch("/kits/{kit_id}")
def update_kit(
    kit_id: int, body: KitUpdate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> KitPublic:
    """Change a kit's condition, status, contents check or notes (operators of its owner)."""
    kit = session.get(KitRow, kit_id)
    if kit is None:
        raise not_found("kit", kit_id)
    principal.require(kit.org_id, "operator", "kit", kit_id)
    now = clock()
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    for key, value in changes.items():
        setattr(kit, key, value)
    if body.contents_check is not None:
        kit.contents_checked_at = now
    session.add(kit)
    audit_change(session, principal, now, "update", "kit", kit_id, kit.org_id, **changes)
    session.commit()
    return kit_public(session, kit, now)


@router.post("/kits/{kit_id}/pis/{pi_index}/claim-code")
def rotate_claim_code(
    kit_id: int,
    pi_index: int,
    principal: AuthDep,
    session: SessionDep,
    resources: ResourcesDep,
    clock: ClockDep,
) -> ClaimCode:
    """Issue a new claim code for a Pi (the old one stops working); shown this once."""
    kit = get_kit(session, principal, kit_id, "operator")
    pi = session.exec(
        select(KitPiRow).where(KitPiRow.kit_id == kit_id, KitPiRow.pi_index == pi_index)
    ).first()
    if pi is None:
        raise not_found("pi", pi_index, f"kit {kit.inventory_code} has Pis 1..n")
    code = _new_claim(resources, pi)
    session.add(pi)
    audit_change(session, principal, clock(), "rotate_claim", "kit", kit_id, kit.org_id, pi_index=pi_index)
    session.commit()
    return code


@router.delete("/kits/{kit_id}/pis/{pi_index}/claim-code", status_code=204)
def revoke_claim_code(
    kit_id: int, pi_index: int, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> None:
    """Revoke a Pi's claim code (a lost label): no device can be claimed with it."""
    kit = get_kit(session, principal, kit_id, "operator")
    pi = session.exec(
        select(KitPiRow).where(KitPiRow.kit_id == kit_id, KitPiRow.pi_index == pi_index)
    ).first()
    if pi is None:
        raise not_found("pi", pi_index)
    now = clock()
    pi.claim_revoked_at, pi.pending = now, None
    session.add(pi)
    audit_change(session, principal, now, "revoke_claim", "kit", kit_id, kit.org_id, pi_index=pi_index)
    session.commit()


# -------------------------------------------------------------------------------------- loans


@router.post("/kits/{kit_id}/loans", status_code=201)
def lend_kit(
    kit_id: int, body: LoanCreate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> LoanPublic:
    """Lend a kit to an organisation (operators of the owner)."""
    kit = session.get(KitRow, kit_id)
    if kit is None:
        raise not_found("kit", kit_id)
    principal.require(kit.org_id, "operator", "kit", kit_id)
    if active_loan(session, kit_id) is not None:
        raise HTTPException(status_code=409, detail="the kit is on loan: return it first (POST .../return)")
    if kit.status in ("in_repair", "retired"):
        raise HTTPException(status_code=409, detail=f"the kit is {kit.status}: it cannot be lent")
    now = clock()
    starts = body.starts_at if body.starts_at is not None else now
    if body.due_at <= starts:
        raise invalid("due_at", "due_at must be after starts_at", body.due_at, where="body")
    if session.get(OrganisationRow, body.org_id) is None:
        raise invalid("org_id", f"organisation {body.org_id} does not exist", body.org_id, where="body")
    loan = LoanRow(
        kit_id=kit_id,
        owner_org_id=kit.org_id,
        org_id=body.org_id,
        borrower=body.borrower,
        starts_at=starts,
        due_at=body.due_at,
        notes=body.notes,
    )
    kit.status = "on_loan"
    session.add(loan)
    session.add(kit)
    session.flush()
    audit_change(session, principal, now, "lend", "kit", kit_id, kit.org_id, loan=loan.id, to_org=body.org_id)
    session.commit()
    return _loan_public(loan, now)


@router.get("/loans")
def list_loans(
    principal: AuthDep,
    session: SessionDep,
    paging: PagingDep,
    clock: ClockDep,
    active: bool | None = None,
    overdue: Annotated[bool, Query(description="only open loans past their due date")] = False,
) -> Page[LoanPublic]:
    """Return loans of kits the caller's organisations own or borrow."""
    now = clock()
    query = select(LoanRow)
    if not principal.global_admin:
        orgs = sorted(principal.org_ids() or set())
        query = query.where(or_(col(LoanRow.org_id).in_(orgs), col(LoanRow.owner_org_id).in_(orgs)))
    if active is not None:
        query = query.where(
            col(LoanRow.returned_at).is_(None) if active else col(LoanRow.returned_at).is_not(None)
        )
    if overdue:
        query = query.where(col(LoanRow.returned_at).is_(None), col(LoanRow.due_at) < now)
    rows, total = page(session, query, paging, col(LoanRow.due_at))
    return Page(data=[_loan_public(r, now) for r in rows], count=total, **paging.model_dump())


@router.post("/kits/{kit_id}/return")
def return_kit_route(
    kit_id: int,
    body: KitReturn,
    principal: AuthDep,
    session: SessionDep,
    resources: ResourcesDep,
    clock: ClockDep,
) -> ReturnPublic:
    """Take a kit back: close its loan, end its deployments, revoke its devices' broker clients and
    tokens, and list the steps to reset each Pi, so the next borrower's data never lands in the
    previous organisation."""
    kit = session.get(KitRow, kit_id)
    if kit is None:
        raise not_found("kit", kit_id)
    principal.require(kit.org_id, "operator", "kit", kit_id)
    now = clock()
    kit.condition = body.condition
    if body.contents_check is not None:
        kit.contents_check, kit.contents_checked_at = body.contents_check, now
    if body.notes:
        kit.notes = body.notes
    try:
        report = return_kit(session, resources.broker, kit, now)
    except BrokerAdminError as exc:
        session.rollback()
        raise HTTPException(status_code=503, detail=f"{exc}: the kit stays on loan; try again") from exc
    # A claim code seen during the loan (labels, phones, the borrower's staff) must not claim the
    # kit's Pis again: every Pi gets a new one, and nothing bound for the last borrower waits on.
    claim_codes = []
    for pi in session.exec(
        select(KitPiRow).where(KitPiRow.kit_id == kit_id).order_by(col(KitPiRow.pi_index))
    ):
        claim_codes.append(_new_claim(resources, pi))
        pi.pending = None
        session.add(pi)
    audit_change(
        session,
        principal,
        now,
        "return",
        "kit",
        kit_id,
        kit.org_id,
        loan=report.loan_id,
        devices_revoked=report.devices_revoked,
        claim_codes_rotated=len(claim_codes),
    )
    session.commit()
    return ReturnPublic(
        claim_codes=claim_codes,
        kit=kit_public(session, kit, now),
        loan_id=report.loan_id,
        deployments_ended=report.deployments_ended,
        devices_revoked=report.devices_revoked,
        tokens_revoked=report.tokens_revoked,
        reset_steps=list(RESET_STEPS),
    )


# -------------------------------------------------------------------------------- calibration


def _cal_public(row: CalibrationRow, now: float) -> CalibrationPublic:
    return CalibrationPublic.model_validate(
        {**row.model_dump(), "due": row.due_at is not None and row.due_at <= now}
    )


@router.post("/kits/{kit_id}/calibrations", status_code=201)
def add_calibration(
    kit_id: int,
    body: CalibrationCreate,
    principal: AuthDep,
    session: SessionDep,
    clock: ClockDep,
    request: Request,
    resources: ResourcesDep,
) -> CalibrationPublic:
    """Record a new calibration version of a sensor's quantity on one Pi (every version is kept),
    and send the Pi's calibration to its enrolled devices with the ``config`` command."""
    kit = get_kit(session, principal, kit_id, "operator")
    if body.quantity not in QUANTITIES:
        raise invalid(
            "quantity", f"unknown quantity: use one of {', '.join(QUANTITIES)}", body.quantity, where="body"
        )
    now = clock()
    previous = session.exec(
        select(CalibrationRow.version)
        .where(
            CalibrationRow.kit_id == kit_id,
            CalibrationRow.pi_index == body.pi_index,
            CalibrationRow.sensor == body.sensor,
            CalibrationRow.quantity == body.quantity,
        )
        .order_by(col(CalibrationRow.version).desc())
    ).first()
    row = CalibrationRow(
        kit_id=kit_id,
        pi_index=body.pi_index,
        sensor=body.sensor,
        quantity=body.quantity,
        offset=body.offset,
        scale=body.scale,
        calibrated_at=body.calibrated_at if body.calibrated_at is not None else now,
        due_at=body.due_at,
        version=(previous or 0) + 1,
        reference=body.reference,
        created_by=principal.label,
    )
    session.add(row)
    session.flush()
    audit_change(
        session,
        principal,
        now,
        "calibrate",
        "kit",
        kit_id,
        kit.org_id,
        sensor=body.sensor,
        quantity=body.quantity,
        version=row.version,
    )
    session.commit()
    public = _cal_public(row, now)
    listener = getattr(request.app.state, "listener", None)
    push_calibration(session, resources.engine, kit_id, body.pi_index, listener, now, principal.label)
    return public


@router.get("/kits/{kit_id}/calibrations/deliveries")
def list_calibration_deliveries(
    kit_id: int, principal: AuthDep, session: SessionDep
) -> list[CalibrationDeliveryPublic]:
    """Return the kit's calibration deliveries to its devices, newest first, with their replies."""
    get_kit(session, principal, kit_id)
    rows = session.exec(
        select(DeviceCommandRow, DeviceRow.pi_index)
        .join(DeviceRow, col(DeviceRow.id) == DeviceCommandRow.device_id)
        .where(DeviceRow.kit_id == kit_id, DeviceCommandRow.name == "config")
        .order_by(col(DeviceCommandRow.id).desc())
    ).all()
    out = []
    for row, pi_index in rows:
        number = row.args.get("version")
        body = (
            session.exec(
                select(DeviceConfigRow.body).where(
                    DeviceConfigRow.device_id == row.device_id, DeviceConfigRow.version == number
                )
            ).first()
            if isinstance(number, int)
            else None
        )
        calibration = list((body or {}).get("calibration") or row.args.get("calibration") or [])
        out.append(
            CalibrationDeliveryPublic(
                command_id=row.command_id,
                device_id=row.device_id,
                pi_index=pi_index,
                version=max((int(c.get("version", 0)) for c in calibration), default=0),
                config_version=number if isinstance(number, int) else None,
                calibration=calibration,
                state=row.state,
                created_at=row.created_at,
                sent_at=row.sent_at,
                replied_at=row.answered_at,
                error=row.error,
            )
        )
    return out


@router.get("/kits/{kit_id}/calibrations")
def list_calibrations(
    kit_id: int,
    principal: AuthDep,
    session: SessionDep,
    clock: ClockDep,
    history: Annotated[bool, Query(description="every version, not only the current ones")] = False,
) -> list[CalibrationPublic]:
    """Return a kit's current calibrations (or their whole history)."""
    get_kit(session, principal, kit_id)
    now = clock()
    if history:
        rows = session.exec(
            select(CalibrationRow).where(CalibrationRow.kit_id == kit_id).order_by(col(CalibrationRow.id))
        ).all()
        return [_cal_public(r, now) for r in rows]
    return [_cal_public(r, now) for r in current_calibrations(session, kit_id)]


@router.get("/calibrations/due")
def calibrations_due(
    principal: AuthDep,
    session: SessionDep,
    clock: ClockDep,
    within_days: Annotated[float, Query(ge=0, le=3660)] = 0,
) -> list[CalibrationPublic]:
    """Return the current calibrations of the caller's kits due within ``within_days``."""
    now = clock()
    query = select(KitRow.id)
    if not principal.global_admin:
        query = query.where(col(KitRow.org_id).in_(sorted(principal.org_ids() or set())))
    due = []
    for kit_id in session.exec(query).all():
        assert kit_id is not None
        for row in current_calibrations(session, kit_id):
            if row.due_at is not None and row.due_at <= now + within_days * 86400:
                due.append(_cal_public(row, now))
    return sorted(due, key=lambda c: c.due_at or 0)
