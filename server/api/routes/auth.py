"""Log in and out (browser sessions), who am I, and a person's own data (export, delete)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, cast, func, or_
from sqlmodel import Session, col, delete, select

from server.api.auth import SESSION_COOKIE, AuthDep, client_key
from server.api.common import audit_change
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.security import hash_secret, verify_password
from server.tables import (
    ApiTokenRow,
    AssessmentRow,
    AuditRow,
    CalibrationRow,
    EnrollmentCodeRow,
    LoanRow,
    MembershipRow,
    OrganisationRow,
    SessionRow,
    UserRow,
)

__all__ = ["MembershipPublic", "UserPublic", "delete_user_data", "export_user_data", "router"]

router = APIRouter(tags=["auth"])


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(min_length=3, max_length=254)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class MembershipPublic(BaseModel):
    org_id: int
    org: str
    role: str


class UserPublic(BaseModel):
    id: int
    email: str
    name: str
    is_global_admin: bool
    active: bool
    created_at: float
    memberships: list[MembershipPublic]


class MePublic(BaseModel):
    """The caller; ``csrf`` is the header value a browser session must send with every change."""

    user: UserPublic | None
    principal: str
    token_kind: str | None
    csrf: str | None


def user_public(session: Session, user: UserRow) -> UserPublic:
    """Return ``user`` with its memberships."""
    rows = session.exec(
        select(MembershipRow.org_id, OrganisationRow.slug, MembershipRow.role)
        .join(OrganisationRow, col(OrganisationRow.id) == MembershipRow.org_id)
        .where(MembershipRow.user_id == user.id)
        .order_by(col(OrganisationRow.slug))
    ).all()
    assert user.id is not None
    return UserPublic(
        id=user.id,
        email=user.email,
        name=user.name,
        is_global_admin=user.is_global_admin,
        active=user.active,
        created_at=user.created_at,
        memberships=[MembershipPublic(org_id=o, org=s, role=r) for o, s, r in rows],
    )


@router.post("/auth/login")
def login(
    body: LoginBody,
    request: Request,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    clock: ClockDep,
) -> MePublic:
    """Log in with e-mail and password; sets the session cookie and returns the CSRF token."""
    key = f"login:{client_key(request)}"
    wait = resources.guesses.retry_after(key)
    if wait:
        raise HTTPException(
            status_code=429,
            detail=f"too many failed logins from your address: wait {wait:.0f} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    user = session.exec(select(UserRow).where(UserRow.email == body.email.strip().lower())).first()
    if (
        not verify_password(body.password, user.password_hash if user else None)
        or user is None
        or not user.active
    ):
        resources.guesses.failed(key)
        raise HTTPException(status_code=401, detail="wrong e-mail or password, or the account is deactivated")
    now = clock()
    raw = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    assert user.id is not None
    session.add(
        SessionRow(
            id_hash=hash_secret(raw),
            user_id=user.id,
            csrf=csrf,
            created_at=now,
            expires_at=now + resources.settings.session_max_age_s,
        )
    )
    session.commit()
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=resources.settings.session_max_age_s,
        httponly=True,
        secure=resources.settings.environment == "production",
        samesite="lax",
        path="/",
    )
    return MePublic(user=user_public(session, user), principal=user.email, token_kind=None, csrf=csrf)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, response: Response, session: SessionDep) -> None:
    """End the browser session."""
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        row = session.get(SessionRow, hash_secret(raw))
        if row is not None:
            session.delete(row)
            session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/auth/me")
def me(principal: AuthDep, request: Request, session: SessionDep) -> MePublic:
    """Return the caller, its organisations and roles."""
    user = session.get(UserRow, principal.user_id) if principal.user_id is not None else None
    csrf = None
    raw = request.cookies.get(SESSION_COOKIE)
    if raw and principal.kind == "user":
        row = session.get(SessionRow, hash_secret(raw))
        csrf = row.csrf if row else None
    return MePublic(
        user=user_public(session, user) if user else None,
        principal=principal.label,
        token_kind=principal.token_kind,
        csrf=csrf,
    )


def _labels(session: Session, user: UserRow) -> set[str]:
    """How ``user`` is named in free-text fields: their e-mail and their tokens' labels."""
    prefixes = session.exec(select(ApiTokenRow.prefix).where(ApiTokenRow.user_id == user.id)).all()
    return {user.email, *(f"token:{p}" for p in prefixes)}


def _mentions(session: Session, user: UserRow) -> list[AuditRow]:
    """Audit entries by others whose details name ``user`` (e-mail, name)."""
    needles = [user.email] + ([user.name] if len(user.name.strip()) >= 3 else [])
    text = cast(AuditRow.detail, String)
    return list(
        session.exec(
            select(AuditRow)
            .where(or_(*(text.contains(n) for n in needles)))
            .where(or_(col(AuditRow.actor_user_id).is_(None), col(AuditRow.actor_user_id) != user.id))
            .order_by(col(AuditRow.at))
        ).all()
    )


def _loans(session: Session, user: UserRow) -> list[LoanRow]:
    """Loans whose borrower (a contact person, free text) is ``user`` by e-mail or name."""
    names = {user.email.lower()} | ({user.name.strip().lower()} if user.name.strip() else set())
    return list(
        session.exec(select(LoanRow).where(func.lower(func.trim(LoanRow.borrower)).in_(sorted(names)))).all()
    )


def _scrub(value: Any, needles: list[str], label: str) -> Any:
    if isinstance(value, str):
        for needle in needles:
            value = value.replace(needle, label)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, needles, label) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, needles, label) for v in value]
    return value


def export_user_data(session: Session, user: UserRow) -> dict[str, Any]:
    """Return everything the registry holds about ``user`` (GDPR art. 15/20): account, tokens,
    what they did (audit log), where others' audit entries, assessments, calibrations, enrollment
    codes and loans name them."""
    tokens = session.exec(select(ApiTokenRow).where(ApiTokenRow.user_id == user.id)).all()
    entries = session.exec(
        select(AuditRow).where(AuditRow.actor_user_id == user.id).order_by(col(AuditRow.at))
    ).all()
    labels = sorted(_labels(session, user))
    audit_fields = {"at", "action", "entity", "entity_id", "org_id", "detail"}
    return {
        "user": user_public(session, user).model_dump(),
        "api_tokens": [
            t.model_dump(
                include={
                    "id",
                    "name",
                    "prefix",
                    "org_id",
                    "role",
                    "kind",
                    "created_at",
                    "last_used_at",
                    "revoked_at",
                }
            )
            for t in tokens
        ],
        "audit_log": [e.model_dump(include=audit_fields) for e in entries],
        "audit_mentions": [e.model_dump(include=audit_fields) for e in _mentions(session, user)],
        "assessments": [
            a.model_dump(include={"deployment_id", "updated_at", "updated_by"})
            for a in session.exec(
                select(AssessmentRow).where(col(AssessmentRow.updated_by).in_(labels))
            ).all()
        ],
        "calibrations": [
            c.model_dump(
                include={"kit_id", "pi_index", "sensor", "quantity", "version", "calibrated_at", "created_by"}
            )
            for c in session.exec(
                select(CalibrationRow).where(col(CalibrationRow.created_by).in_(labels))
            ).all()
        ],
        "enrollment_codes": [
            c.model_dump(include={"id", "org_id", "deployment_id", "created_at", "created_by"})
            for c in session.exec(
                select(EnrollmentCodeRow).where(col(EnrollmentCodeRow.created_by).in_(labels))
            ).all()
        ],
        "loans": [
            loan.model_dump(
                include={"id", "kit_id", "org_id", "borrower", "starts_at", "due_at", "returned_at"}
            )
            for loan in _loans(session, user)
        ],
        "note": "Readings hold no personal data by design: sensors measure rooms and places, never people.",
    }


def delete_user_data(session: Session, user: UserRow, now: float) -> None:
    """Delete ``user``, their memberships, sessions and tokens; pseudonymise their audit entries and
    every other place that names them (audit details, assessments, calibrations, enrollment codes,
    loans)."""
    label = f"deleted user #{user.id}"
    labels = sorted(_labels(session, user))
    needles = sorted(
        {user.email, *([user.name] if len(user.name.strip()) >= 3 else [])}, key=len, reverse=True
    )
    for entry in _mentions(session, user):
        entry.detail = _scrub(entry.detail, needles, label)
        session.add(entry)
    for assessment in session.exec(
        select(AssessmentRow).where(col(AssessmentRow.updated_by).in_(labels))
    ).all():
        assessment.updated_by = label
        session.add(assessment)
    for calibration in session.exec(
        select(CalibrationRow).where(col(CalibrationRow.created_by).in_(labels))
    ).all():
        calibration.created_by = label
        session.add(calibration)
    for code in session.exec(
        select(EnrollmentCodeRow).where(col(EnrollmentCodeRow.created_by).in_(labels))
    ).all():
        code.created_by = label
        session.add(code)
    for loan in _loans(session, user):
        loan.borrower = label
        session.add(loan)
    session.exec(delete(SessionRow).where(col(SessionRow.user_id) == user.id))
    session.exec(delete(MembershipRow).where(col(MembershipRow.user_id) == user.id))
    for token in session.exec(select(ApiTokenRow).where(ApiTokenRow.user_id == user.id)).all():
        token.user_id = None
        token.revoked_at = token.revoked_at or now
        token.name = label
        session.add(token)
    for entry in session.exec(select(AuditRow).where(AuditRow.actor_user_id == user.id)).all():
        entry.actor, entry.actor_user_id = label, None
        entry.detail = _scrub(entry.detail, needles, label)
        session.add(entry)
    session.delete(user)


@router.get("/me/export")
def export_me(principal: AuthDep, session: SessionDep) -> dict[str, Any]:
    """Return all personal data the registry holds about the caller."""
    user = session.get(UserRow, principal.user_id) if principal.user_id is not None else None
    if user is None:
        raise HTTPException(status_code=404, detail="this token belongs to no person: nothing to export")
    return export_user_data(session, user)


@router.delete("/me", status_code=204)
def delete_me(principal: AuthDep, session: SessionDep, clock: ClockDep, response: Response) -> None:
    """Delete the caller's account and personal data (audit entries are kept, pseudonymised)."""
    user = session.get(UserRow, principal.user_id) if principal.user_id is not None else None
    if user is None:
        raise HTTPException(status_code=404, detail="this token belongs to no person: nothing to delete")
    now = clock()
    audit_change(session, principal, now, "delete", "user", user.id, None, reason="own request")
    session.flush()
    delete_user_data(session, user, now)
    session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
