"""A deployment's derived quantities: read them, and set a new version (operators).

``PUT /api/v1/deployments/{id}/derived`` with ``{"derivations": [{"kind": "fill_level",
"depth_mm": 1000}]}`` makes the next version of each of its devices' configuration, whose
``derived`` section holds them; a depth, ratio or voltage that is missing, zero or negative is
refused (422) with the parameter, the problem and what to set. The newest version applies on read
to every reading of the device (``server.derived``); the readings are never changed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from kits.derived import DerivedSet
from server.api.auth import AuthDep
from server.api.common import audit_change
from server.api.deps import ClockDep, SessionDep
from server.api.routes.deployments import get_deployment
from server.api.schemas import invalid
from server.derived import NoDevice, derived_of, history, save
from server.device_config import BadConfig
from server.tables import DeploymentRow

__all__ = ["DerivedPublic", "router"]

router = APIRouter(tags=["deployments"])


class DerivedVersion(BaseModel):
    """A device config version that set the device's derived quantities."""

    device: str
    version: int
    derivations: list[dict[str, Any]]
    created_at: float
    created_by: str


class DerivedPublic(BaseModel):
    """What a deployment derives: the definitions in force (each device's config version holding
    them, and the use-case's parameter-free kinds), the quantities read first, the kinds still
    lacking parameters, and every version that changed them."""

    deployment_id: int
    config_versions: dict[str, int]
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
        config_versions=derived.versions,
        applied=[r.model_dump(mode="json", exclude_none=True) for r in derived.rules],
        outputs=derived.outputs(),
        headline=derived.headline,
        missing=derived.missing,
        versions=[DerivedVersion(**v) for v in history(session, row)],
    )


@router.get("/deployments/{deployment_id}/derived")
def read_derived(deployment_id: int, principal: AuthDep, session: SessionDep) -> DerivedPublic:
    """Return the deployment's derived quantities and every version of their definitions."""
    return _public(session, get_deployment(session, principal, deployment_id))


@router.put("/deployments/{deployment_id}/derived")
def set_derived(
    deployment_id: int, body: DerivedSet, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> DerivedPublic:
    """Set the deployment's derivations: the next config version of each of its devices, with its
    ``derived`` section (operators); old versions are kept, the agent is sent nothing."""
    row = get_deployment(session, principal, deployment_id, "operator")
    now = clock()
    try:
        made = save(session, row, body, principal.label, now)
    except NoDevice as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except BadConfig as exc:
        raise invalid("derivations", str(exc), body.model_dump(mode="json"), where="body") from exc
    audit_change(
        session,
        principal,
        now,
        "set_derived",
        "deployment",
        deployment_id,
        row.org_id,
        config_versions={r.device_id: r.version for r in made},
        derivations=body.model_dump(mode="json", exclude_none=True)["derivations"],
    )
    session.commit()
    return _public(session, row)
