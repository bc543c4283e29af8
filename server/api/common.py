"""What many routes share: pagination, the page model, org resolution, audit shorthand."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from server import audit
from server.api.auth import Principal
from server.tables import OrganisationRow

__all__ = ["Page", "Paging", "PagingDep", "audit_change", "org_of", "page", "resolve_org", "scoped"]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: ``count`` is the total matching, ``data`` at most ``limit`` of them."""

    data: list[T]
    count: int
    limit: int
    offset: int


class Paging(BaseModel):
    limit: int
    offset: int


async def get_paging(
    limit: Annotated[int, Query(ge=1, le=500, description="page size")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0,
) -> Paging:
    return Paging(limit=limit, offset=offset)


PagingDep = Annotated[Paging, Depends(get_paging)]


def page(session: Session, query: SelectOfScalar[Any], paging: Paging, order: Any) -> tuple[list[Any], int]:
    """Return the rows of ``query`` in ``paging``'s window, ordered by ``order``, and the total."""
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(order).offset(paging.offset).limit(paging.limit)).all()
    return list(rows), int(total)


def scoped(query: SelectOfScalar[Any], org_column: Any, principal: Principal, role: str = "viewer") -> Any:
    """Limit ``query`` to the organisations where ``principal`` has at least ``role``."""
    if principal.sees_all():
        return query
    orgs = principal.org_ids(role)
    if orgs is None:
        return query
    return query.where(col(org_column).in_(sorted(orgs)))


def resolve_org(session: Session, principal: Principal, org_id: int | None, role: str) -> OrganisationRow:
    """Return the organisation a new thing belongs to: ``org_id``, or the caller's only one.

    Raises:
        HTTPException: 422 when the caller has several organisations and named none; 404/403 as
            :meth:`Principal.require`.
    """
    principal.require_user()
    if org_id is None:
        orgs = principal.org_ids(role) or set()
        if len(orgs) != 1:
            orgs = principal.org_ids() or set()  # one membership with a weaker role: 403 below
        if len(orgs) != 1:
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "type": "missing",
                        "loc": ["body", "org_id"],
                        "msg": "org_id is required: you belong to several organisations "
                        "(or none): name the one this belongs to (GET /api/v1/orgs)",
                        "input": None,
                    }
                ],
            )
        org_id = next(iter(orgs))
    principal.require(org_id, role, "organisation", org_id)
    org = session.get(OrganisationRow, org_id)
    if org is None:
        raise HTTPException(status_code=404, detail=f"organisation {org_id} does not exist")
    return org


def org_of(session: Session, org_id: int) -> str:
    """Return the slug of organisation ``org_id``."""
    org = session.get(OrganisationRow, org_id)
    return org.slug if org else ""


def audit_change(
    session: Session,
    principal: Principal,
    now: float,
    action: str,
    entity: str,
    entity_id: object,
    org_id: int | None,
    **detail: Any,
) -> None:
    """Record a change by ``principal`` in the audit log (committed with the change)."""
    audit.record(
        session,
        at=now,
        actor=principal.label,
        actor_user_id=principal.user_id,
        action=action,
        entity=entity,
        entity_id=entity_id,
        org_id=org_id,
        detail=detail,
    )
