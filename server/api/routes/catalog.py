"""The catalogue: kit profiles and use-cases, as loaded into the registry at startup."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlmodel import Session, col, select

from server.api.deps import SessionDep
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
def list_use_cases(session: SessionDep) -> UseCasesPublic:
    """Return every use-case, by id."""
    rows = session.exec(select(UseCaseRow).order_by(col(UseCaseRow.id))).all()
    data = [UseCasePublic.from_row(row) for row in rows]
    return UseCasesPublic(data=data, count=len(data))


@router.get("/use-cases/{use_case_id}")
def get_use_case(use_case_id: str, session: SessionDep) -> UseCasePublic:
    """Return one use-case.

    Raises:
        HTTPException: 404, naming the known ids, when there is no such use-case.
    """
    row = session.get(UseCaseRow, use_case_id)
    if row is None:
        known = list(session.exec(select(UseCaseRow.id).order_by(col(UseCaseRow.id))))
        raise _not_found("use-case", use_case_id, known, "/api/v1/use-cases")
    return UseCasePublic.from_row(row)
