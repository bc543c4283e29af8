"""The catalogue: kit profiles and use-cases, as loaded into the registry at startup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, col, select

from kits.models import UseCase
from server.api.auth import AuthDep, PrincipalDep, not_found
from server.api.common import audit_change, resolve_org
from server.api.deps import CatalogDep, ClockDep, SessionDep
from server.api.schemas import invalid
from server.models import (
    KitProfilePublic,
    KitProfileRow,
    KitProfilesPublic,
    UseCasePublic,
    UseCaseRow,
    UseCasesPublic,
)

__all__ = ["router"]

router = APIRouter(tags=["catalogue"])


class UseCaseCreate(BaseModel):
    """An organisation's own use-case, in the catalogue's format."""

    model_config = ConfigDict(extra="forbid")

    org_id: int | None = None
    use_case: UseCase


def _use_cases_of(session: Session, profile: str) -> list[str]:
    rows = session.exec(
        select(UseCaseRow.id).where(UseCaseRow.kit_profile == profile).order_by(col(UseCaseRow.id))
    )
    return list(rows)


def _not_found(kind: str, wanted: str, known: list[str], path: str) -> HTTPException:
    listing = ", ".join(known) if known else "none: the catalogue is empty"
    return HTTPException(
        status_code=404,
        detail=f"{kind} {wanted!r} is not in the catalogue: known ids are {listing} (GET {path})",
    )


@router.get("/kit-profiles")
def list_kit_profiles(session: SessionDep) -> KitProfilesPublic:
    """Return every kit profile, by id."""
    rows = session.exec(select(KitProfileRow).order_by(col(KitProfileRow.id))).all()
    data = [KitProfilePublic.from_row(row, _use_cases_of(session, row.id)) for row in rows]
    return KitProfilesPublic(data=data, count=len(data))


@router.get("/kit-profiles/{profile_id}")
def get_kit_profile(profile_id: str, session: SessionDep) -> KitProfilePublic:
    """Return one kit profile.

    Raises:
        HTTPException: 404, naming the known ids, when there is no such profile.
    """
    row = session.get(KitProfileRow, profile_id)
    if row is None:
        known = list(session.exec(select(KitProfileRow.id).order_by(col(KitProfileRow.id))))
        raise _not_found("kit profile", profile_id, known, "/api/v1/kit-profiles")
    return KitProfilePublic.from_row(row, _use_cases_of(session, row.id))


@router.get("/use-cases")
def list_use_cases(
    session: SessionDep,
    principal: PrincipalDep,
    sensor: Annotated[str | None, Query(max_length=32, description="a kit part, e.g. scd4x")] = None,
    theme: Annotated[str | None, Query(max_length=32, description="e.g. air, mobility, buildings")] = None,
    quantity: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="words in the title, summary or problem")
    ] = None,
) -> UseCasesPublic:
    """Return the catalogue's use-cases and the caller's organisations' own, filtered, by id."""
    rows = session.exec(select(UseCaseRow).order_by(col(UseCaseRow.id))).all()
    data = []
    for row in rows:
        if row.org_id is not None and not (principal.authenticated and principal.can(row.org_id)):
            continue
        case = UseCasePublic.from_row(row)
        if sensor and sensor not in case.sensors:
            continue
        if theme and theme not in case.themes:
            continue
        if quantity and quantity not in case.quantities:
            continue
        if q and not all(
            word in f"{case.title} {case.summary} {case.problem}".lower() for word in q.lower().split()
        ):
            continue
        data.append(case)
    return UseCasesPublic(data=data, count=len(data))


@router.post("/use-cases", status_code=201)
def create_use_case(
    body: UseCaseCreate, principal: AuthDep, session: SessionDep, catalog: CatalogDep, clock: ClockDep
) -> UseCasePublic:
    """Add an organisation's own use-case (editable; the catalogue's are read-only)."""
    org = resolve_org(session, principal, body.org_id, "operator")
    case = body.use_case
    if session.get(UseCaseRow, case.id) is not None:
        raise HTTPException(status_code=409, detail=f"use-case {case.id!r} exists: pick another id")
    if session.get(KitProfileRow, case.kit_profile) is None:
        raise invalid(
            ("use_case", "kit_profile"),
            "unknown kit profile: see GET /api/v1/kit-profiles",
            case.kit_profile,
            where="body",
        )
    row = UseCaseRow(
        id=case.id,
        title=case.title,
        kit_profile=case.kit_profile,
        dashboard=case.dashboard,
        spec=case.model_dump(mode="json"),
        org_id=org.id,
    )
    session.add(row)
    audit_change(session, principal, clock(), "create", "use_case", case.id, org.id)
    session.commit()
    return UseCasePublic.from_row(row)


@router.put("/use-cases/{use_case_id}")
def update_use_case(
    use_case_id: str, body: UseCaseCreate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> UseCasePublic:
    """Replace an organisation's own use-case (catalogue entries change only by re-import)."""
    row = session.get(UseCaseRow, use_case_id)
    if row is None:
        raise not_found("use-case", use_case_id)
    if row.org_id is None:
        raise HTTPException(
            status_code=403,
            detail="catalogue use-cases are read-only: edit the YAML in "
            "kits/catalog/usecases/ and run `suitcase server import-catalog`",
        )
    principal.require(row.org_id, "operator", "use-case", use_case_id)
    case = body.use_case
    if case.id != use_case_id:
        raise invalid(("use_case", "id"), "the id cannot change", case.id, where="body")
    row.title, row.kit_profile, row.dashboard = case.title, case.kit_profile, case.dashboard
    row.spec = case.model_dump(mode="json")
    session.add(row)
    audit_change(session, principal, clock(), "update", "use_case", use_case_id, row.org_id)
    session.commit()
    return UseCasePublic.from_row(row)


@router.get("/use-cases/{use_case_id}")
def get_use_case(use_case_id: str, session: SessionDep, principal: PrincipalDep) -> UseCasePublic:
    """Return one use-case.

    Raises:
        HTTPException: 404, naming the known ids, when there is no such use-case.
    """
    row = session.get(UseCaseRow, use_case_id)
    if (
        row is not None
        and row.org_id is not None
        and not (principal.authenticated and principal.can(row.org_id))
    ):
        row = None
    if row is None:
        known = list(
            session.exec(
                select(UseCaseRow.id).where(col(UseCaseRow.org_id).is_(None)).order_by(col(UseCaseRow.id))
            )
        )
        raise _not_found("use-case", use_case_id, known, "/api/v1/use-cases")
    return UseCasePublic.from_row(row)
