"""Organisations, their members and roles; users (global admins); the audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from server.api.auth import AuthDep, PrincipalDep, Role, not_found
from server.api.common import Page, PagingDep, audit_change, page, scoped
from server.api.deps import ClockDep, SessionDep
from server.api.routes.auth import UserPublic, delete_user_data, export_user_data, user_public
from server.security import hash_password
from server.tables import ApiTokenRow, AuditRow, MembershipRow, OrganisationRow, UserRow

__all__ = ["OrgCreate", "OrgPublic", "OrgUpdate", "create_org", "create_user", "router"]

router = APIRouter(tags=["organisations"])

OrgSlug = Annotated[
    str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$", description="used in topics")
]
OrgKind = Literal["municipality", "region", "centre", "other"]
Email = Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$", max_length=254)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrgCreate(_Body):
    slug: OrgSlug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: OrgKind = "municipality"


class OrgUpdate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    kind: OrgKind | None = None


class OrgPublic(BaseModel):
    id: int
    slug: str
    name: str
    kind: str
    created_at: float
    your_role: str | None


class MemberSet(_Body):
    """Add a person to the organisation (created if new: then ``password`` is required) or change
    their role."""

    email: Email
    role: Role
    name: Annotated[str, Field(max_length=200)] = ""
    password: Annotated[str, Field(min_length=12, max_length=1024)] | None = None


class MemberPublic(BaseModel):
    user_id: int
    email: str
    name: str
    role: str


class UserCreate(_Body):
    email: Email
    name: Annotated[str, Field(max_length=200)] = ""
    password: Annotated[str, Field(min_length=12, max_length=1024)]
    is_global_admin: bool = False


class AuditPublic(BaseModel):
    id: int
    at: float
    actor: str
    org_id: int | None
    action: str
    entity: str
    entity_id: str
    detail: dict[str, Any]


def _public(org: OrganisationRow, role: str | None) -> OrgPublic:
    assert org.id is not None
    return OrgPublic(
        id=org.id, slug=org.slug, name=org.name, kind=org.kind, created_at=org.created_at, your_role=role
    )


def create_org(session: Session, body: OrgCreate, now: float) -> OrganisationRow:
    """Add an organisation (the caller commits).

    Raises:
        HTTPException: 409 when the slug is taken.
    """
    if session.exec(select(OrganisationRow).where(OrganisationRow.slug == body.slug)).first():
        raise HTTPException(status_code=409, detail=f"organisation {body.slug!r} exists: pick another slug")
    org = OrganisationRow(slug=body.slug, name=body.name, kind=body.kind, created_at=now)
    session.add(org)
    session.flush()
    return org


def create_user(
    session: Session, email: str, password: str, name: str, now: float, *, global_admin: bool = False
) -> UserRow:
    """Add a user (the caller commits).

    Raises:
        HTTPException: 409 when the e-mail is taken.
    """
    email = email.strip().lower()
    if session.exec(select(UserRow).where(UserRow.email == email)).first():
        raise HTTPException(status_code=409, detail=f"a user with e-mail {email!r} exists")
    user = UserRow(
        email=email,
        name=name,
        password_hash=hash_password(password),
        is_global_admin=global_admin,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def _org(session: Session, principal: Any, org_id: int, role: str) -> OrganisationRow:
    principal.require(org_id, role, "organisation", org_id)
    org = session.get(OrganisationRow, org_id)
    if org is None:
        raise not_found("organisation", org_id)
    return org


@router.post("/orgs", status_code=201)
def post_org(body: OrgCreate, principal: AuthDep, session: SessionDep, clock: ClockDep) -> OrgPublic:
    """Add an organisation (global admins only)."""
    principal.require_global_admin()
    now = clock()
    org = create_org(session, body, now)
    audit_change(session, principal, now, "create", "organisation", org.id, org.id, slug=org.slug)
    session.commit()
    return _public(org, "admin")


@router.get("/orgs")
def list_orgs(
    principal: AuthDep,
    session: SessionDep,
    paging: PagingDep,
    q: Annotated[str | None, Query(max_length=100, description="part of the slug or name")] = None,
) -> Page[OrgPublic]:
    """Return the organisations the caller belongs to (all of them for a global admin)."""
    query = scoped(select(OrganisationRow), OrganisationRow.id, principal)
    if q:
        query = query.where(
            col(OrganisationRow.slug).contains(q.lower()) | col(OrganisationRow.name).contains(q)
        )
    rows, total = page(session, query, paging, col(OrganisationRow.slug))
    assert all(r.id is not None for r in rows)
    return Page(
        data=[_public(r, principal.role_in(r.id or 0)) for r in rows], count=total, **paging.model_dump()
    )


@router.get("/orgs/{org_id}")
def get_org(org_id: int, principal: AuthDep, session: SessionDep) -> OrgPublic:
    """Return one organisation."""
    return _public(_org(session, principal, org_id, "viewer"), principal.role_in(org_id))


@router.patch("/orgs/{org_id}")
def patch_org(
    org_id: int, body: OrgUpdate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> OrgPublic:
    """Change an organisation's name or kind (its admins)."""
    org = _org(session, principal, org_id, "admin")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    for key, value in changes.items():
        setattr(org, key, value)
    session.add(org)
    audit_change(session, principal, clock(), "update", "organisation", org_id, org_id, **changes)
    session.commit()
    return _public(org, principal.role_in(org_id))


@router.get("/orgs/{org_id}/members")
def list_members(
    org_id: int, principal: AuthDep, session: SessionDep, paging: PagingDep
) -> Page[MemberPublic]:
    """Return the members of an organisation and their roles."""
    _org(session, principal, org_id, "viewer")
    query = (
        select(UserRow.id, UserRow.email, UserRow.name, MembershipRow.role)
        .join(MembershipRow, col(MembershipRow.user_id) == UserRow.id)
        .where(MembershipRow.org_id == org_id)
    )
    rows, total = page(session, query, paging, col(UserRow.email))  # type: ignore[arg-type]
    data = [MemberPublic(user_id=u, email=e, name=n, role=r) for u, e, n, r in rows]
    return Page(data=data, count=total, **paging.model_dump())


@router.put("/orgs/{org_id}/members")
def set_member(
    org_id: int, body: MemberSet, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> MemberPublic:
    """Add a person to the organisation with a role, or change their role (its admins)."""
    _org(session, principal, org_id, "admin")
    now = clock()
    user = session.exec(select(UserRow).where(UserRow.email == body.email.strip().lower())).first()
    if user is None:
        if body.password is None:
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "type": "missing",
                        "loc": ["body", "password"],
                        "input": None,
                        "msg": f"{body.email} has no account yet: give an initial password (12+ characters)",
                    }
                ],
            )
        user = create_user(session, body.email, body.password, body.name, now)
        audit_change(session, principal, now, "create", "user", user.id, org_id, email=user.email)
    assert user.id is not None
    membership = session.get(MembershipRow, (user.id, org_id))
    if membership is None:
        membership = MembershipRow(user_id=user.id, org_id=org_id, role=body.role)
    membership.role = body.role
    session.add(membership)
    audit_change(
        session, principal, now, "set_role", "membership", f"{user.id}@{org_id}", org_id, role=body.role
    )
    session.commit()
    return MemberPublic(user_id=user.id, email=user.email, name=user.name, role=body.role)


@router.delete("/orgs/{org_id}/members/{user_id}", status_code=204)
def remove_member(
    org_id: int, user_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> None:
    """Remove a person from the organisation (its admins); their tokens for it are revoked."""
    _org(session, principal, org_id, "admin")
    membership = session.get(MembershipRow, (user_id, org_id))
    if membership is None:
        raise not_found("member", user_id)
    now = clock()
    session.delete(membership)
    revoked = 0
    for token in session.exec(
        select(ApiTokenRow).where(
            ApiTokenRow.user_id == user_id,
            ApiTokenRow.org_id == org_id,
            col(ApiTokenRow.revoked_at).is_(None),
        )
    ).all():
        token.revoked_at = now
        session.add(token)
        revoked += 1
    audit_change(
        session, principal, now, "remove", "membership", f"{user_id}@{org_id}", org_id, tokens_revoked=revoked
    )
    session.commit()


@router.post("/users", status_code=201)
def post_user(body: UserCreate, principal: AuthDep, session: SessionDep, clock: ClockDep) -> UserPublic:
    """Add a user with no organisation yet (global admins only)."""
    principal.require_global_admin()
    now = clock()
    user = create_user(session, body.email, body.password, body.name, now, global_admin=body.is_global_admin)
    audit_change(session, principal, now, "create", "user", user.id, None, email=user.email)
    session.commit()
    return user_public(session, user)


@router.get("/users")
def list_users(principal: AuthDep, session: SessionDep, paging: PagingDep) -> Page[UserPublic]:
    """Return every user (global admins only)."""
    principal.require_global_admin()
    rows, total = page(session, select(UserRow), paging, col(UserRow.email))
    return Page(data=[user_public(session, u) for u in rows], count=total, **paging.model_dump())


@router.get("/users/{user_id}/export")
def export_user(user_id: int, principal: AuthDep, session: SessionDep) -> dict[str, Any]:
    """Return all personal data held about a user, on their request (global admins only)."""
    principal.require_global_admin()
    user = session.get(UserRow, user_id)
    if user is None:
        raise not_found("user", user_id)
    return export_user_data(session, user)


@router.delete("/users/{user_id}", status_code=204)
def delete_user(user_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep) -> None:
    """Delete a user and their personal data, on their request (global admins only)."""
    principal.require_global_admin()
    user = session.get(UserRow, user_id)
    if user is None:
        raise not_found("user", user_id)
    now = clock()
    delete_user_data(session, user, now)
    audit_change(session, principal, now, "delete", "user", user_id, None, reason="personal data deletion")
    session.commit()


@router.get("/audit")
def list_audit(
    principal: PrincipalDep,
    session: SessionDep,
    paging: PagingDep,
    org_id: int | None = None,
    entity: Annotated[str | None, Query(max_length=64)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditPublic]:
    """Return the audit log, newest first: of the organisations where the caller is admin."""
    principal.require_user()
    query = select(AuditRow)
    if not principal.global_admin:
        orgs = principal.org_ids("admin") or set()
        query = query.where(col(AuditRow.org_id).in_(sorted(orgs)))
    if org_id is not None:
        query = query.where(AuditRow.org_id == org_id)
    if entity:
        query = query.where(AuditRow.entity == entity)
    if entity_id:
        query = query.where(AuditRow.entity_id == entity_id)
    rows, total = page(session, query, paging, col(AuditRow.id).desc())
    data = [AuditPublic.model_validate(r.model_dump()) for r in rows]
    return Page(data=data, count=total, **paging.model_dump())


_ = IntegrityError
