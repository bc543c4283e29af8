"""API tokens: scoped to an organisation and a role, revocable, with their last use.

Kiosk tokens are read-only and limited to chosen deployments.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, or_, select

from server.api.auth import AuthDep, Role, not_found
from server.api.common import Page, PagingDep, audit_change, page
from server.api.deps import ClockDep, SessionDep
from server.security import hash_secret, new_token
from server.tables import ROLES, ApiTokenRow, DeploymentRow

__all__ = ["MAX_TOKEN_AGE_S", "TokenCreate", "TokenCreated", "TokenPublic", "router"]

router = APIRouter(tags=["tokens"])

# Every token expires: a leaked one stops working by itself within a year.
MAX_TOKEN_AGE_S = 366 * 86400.0


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    org_id: int
    role: Role = "viewer"
    kind: Literal["api", "kiosk"] = "api"
    deployment_ids: list[int] = Field(default_factory=list, max_length=100, description="kiosk tokens only")
    expires_in_s: Annotated[
        float | None,
        Field(
            gt=0,
            le=MAX_TOKEN_AGE_S,
            description="lifetime; default and most: 366 days, and never past the expiry of the token "
            "that makes it",
        ),
    ] = None


class TokenPublic(BaseModel):
    id: int
    name: str
    prefix: str
    org_id: int
    role: str
    kind: str
    deployment_ids: list[int]
    device_id: str | None
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


class TokenCreated(TokenPublic):
    """The new token: ``token`` is shown this once; the server keeps only its hash."""

    token: str


def _public(row: ApiTokenRow) -> TokenPublic:
    return TokenPublic.model_validate(row.model_dump())


@router.post("/tokens", status_code=201)
def create_token(body: TokenCreate, principal: AuthDep, session: SessionDep, clock: ClockDep) -> TokenCreated:
    """Create an API token for the caller in one of their organisations, with at most their role;
    made with a token, it expires no later than that token."""
    principal.require(body.org_id, "viewer", "organisation", body.org_id)
    if principal.kiosk_deployments is not None or principal.device_id is not None:
        raise HTTPException(status_code=403, detail="kiosk and device tokens cannot create tokens")
    have = principal.role_in(body.org_id) or "viewer"
    role = "viewer" if body.kind == "kiosk" else body.role
    if ROLES.index(role) > ROLES.index(have):
        raise HTTPException(status_code=403, detail=f"you are {have} here: a token cannot have more ({role})")
    if body.kind == "kiosk":
        if not body.deployment_ids:
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "type": "missing",
                        "loc": ["body", "deployment_ids"],
                        "input": [],
                        "msg": "a kiosk token shows chosen deployments: list at least one",
                    }
                ],
            )
        for dep_id in body.deployment_ids:
            dep = session.get(DeploymentRow, dep_id)
            if dep is None or dep.org_id != body.org_id:
                raise not_found("deployment", dep_id)
    now = clock()
    expires_at = now + (body.expires_in_s or MAX_TOKEN_AGE_S)
    if principal.token_expires_at is not None and expires_at > principal.token_expires_at:
        if body.expires_in_s is not None:
            raise HTTPException(
                status_code=403,
                detail="a token cannot outlive the token that makes it: ask for at most "
                f"{max(0.0, principal.token_expires_at - now):.0f} s, or log in to make a longer one",
            )
        expires_at = principal.token_expires_at
    raw = new_token()
    row = ApiTokenRow(
        name=body.name,
        token_hash=hash_secret(raw),
        prefix=raw[:10],
        org_id=body.org_id,
        role=role,
        kind=body.kind,
        user_id=principal.user_id,
        deployment_ids=body.deployment_ids if body.kind == "kiosk" else [],
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    audit_change(
        session,
        principal,
        now,
        "create",
        "token",
        row.id,
        body.org_id,
        name=body.name,
        role=role,
        kind=body.kind,
    )
    session.commit()
    return TokenCreated(**_public(row).model_dump(), token=raw)


@router.get("/tokens")
def list_tokens(principal: AuthDep, session: SessionDep, paging: PagingDep) -> Page[TokenPublic]:
    """Return the caller's own tokens and all tokens of the organisations they administer."""
    query = select(ApiTokenRow)
    if not principal.global_admin:
        admin_of = sorted(principal.org_ids("admin") or set())
        query = query.where(
            or_(col(ApiTokenRow.org_id).in_(admin_of), col(ApiTokenRow.user_id) == (principal.user_id or -1))
        )
    rows, total = page(session, query, paging, col(ApiTokenRow.id))
    return Page(data=[_public(r) for r in rows], count=total, **paging.model_dump())


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep) -> TokenPublic:
    """Revoke a token: its own holder or an admin of its organisation."""
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise not_found("token", token_id)
    own = row.user_id is not None and row.user_id == principal.user_id
    if not own:
        principal.require(row.org_id, "admin", "token", token_id)
    if row.revoked_at is None:
        now = clock()
        row.revoked_at = now
        session.add(row)
        audit_change(session, principal, now, "revoke", "token", token_id, row.org_id)
        session.commit()
    return _public(row)
