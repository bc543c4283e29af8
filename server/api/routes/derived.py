"""A deployment's derived quantities: read them, and set a new version (operators).

``PUT /api/v1/deployments/{id}/derived`` with ``{"derivations": [{"kind": "fill_level",
"depth_mm": 1000}]}`` adds a version; a depth, ratio or voltage that is missing, zero or negative
is refused (422) with the parameter, the problem and what to set. The newest version applies on
read to every reading of the deployment (``server.derived``); the readings are never changed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from kits.derived import DerivedSet
from server.api.auth import AuthDep
from server.api.common import audit_change
from server.api.deps import ClockDep, SessionDep
from server.api.routes.deployments import get_deployment
from server.derived import derived_of, save_version, versions
from server.tables import DeploymentRow

__all__ = ["DerivedPublic", "router"]

router = APIRouter(tags=["deployments"])


class DerivedVersion(BaseModel):
    version: int
    derivations: list[dict[str, Any]]
    created_at: float
    created_by: str


class DerivedPublic(BaseModel):
    """What a deployment derives: the newest version set, what applies (with the use-case's
    parameter-free kinds), the quantities read first, the kinds still lacking parameters."""

    deployment_id: int
    version: int | None
    applied: list[dict[str, Any]]
    outputs: list[str]
    headline: list[str] | None
    missing: list[str]
    versions: list[DerivedVersion]


def _public(session: SessionDep, row: DeploymentRow) -> DerivedPublic:
    assert row.id is not None
    derived = derived_of(session, row)
    return DerivedPublic(
        deployment_id=row.id,
        version=derived.version,
        applied=[r.model_dump(exclude_none=True) for r in derived.rules],
        outputs=derived.outputs(),
        headline=derived.headline,
        missing=derived.missing,
        versions=[
            DerivedVersion(
                version=v.version, derivations=v.derivations, created_at=v.created_at, created_by=v.created_by
            )
            for v in versions(session, row.id)
        ],
    )


@router.get("/deployments/{deployment_id}/derived")
def read_derived(deployment_id: int, principal: AuthDep, session: SessionDep) -> DerivedPublic:
    """Return the deployment's derived quantities and every version of their definitions."""
    return _public(session, get_deployment(session, principal, deployment_id))


@router.put("/deployments/{deployment_id}/derived")
def set_derived(
    deployment_id: int, body: DerivedSet, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> DerivedPublic:
    """Set the deployment's derivations as a new version (operators); old versions are kept."""
    row = get_deployment(session, principal, deployment_id, "operator")
    now = clock()
    saved = save_version(session, row, body, principal.label, now)
    audit_change(
        session,
        principal,
        now,
        "set_derived",
        "deployment",
        deployment_id,
        row.org_id,
        version=saved.version,
        derivations=saved.derivations,
    )
    session.commit()
    return _public(session, row)
