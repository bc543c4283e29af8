"""``POST /kits/import``: register kits and their Pis from a CSV, all or nothing (operators).

The format is in :mod:`server.kit_csv`. A refused import answers 422 with one entry per problem,
each naming its row and column; nothing is written. ``dry_run`` checks without writing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from server.api.auth import AuthDep
from server.api.common import audit_change, resolve_org
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.broker_admin import BrokerAdminError
from server.kit_csv import CsvProblem, parse_kit_csv
from server.kit_import import ImportRefused, apply_import, check_import

__all__ = ["KitImport", "KitImportPublic", "router"]

router = APIRouter(tags=["kits"])


class KitImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csv: Annotated[
        str,
        Field(min_length=1, description="the CSV text: kit,profile,pi[,claim_code,deployment,interval_s]"),
    ]
    org_id: int | None = Field(default=None, description="owner of the kits; default: your only organisation")
    dry_run: bool = Field(default=False, description="check only; write nothing")


class ImportedClaim(BaseModel):
    kit: str
    pi: int
    code: str
    claim_url: str


class KitImportPublic(BaseModel):
    """What the import made. ``claim_codes``: the codes made for Pis without one, shown this once."""

    dry_run: bool
    kits: int
    kit_ids: list[int]
    pis: int
    devices: list[str]
    claim_codes: list[ImportedClaim]
    seconds_registry: float
    seconds_broker: float


def _refusal(problems: list[CsvProblem]) -> JSONResponse:
    detail = [
        {
            "type": "csv",
            "loc": ["body", "csv", p.row, p.column or ""],
            "row": p.row,
            "column": p.column,
            "msg": str(p),
        }
        for p in problems
    ]
    return JSONResponse(status_code=422, content={"detail": detail, "error": "import_refused", "status": 422})


@router.post("/kits/import", status_code=201, response_model=KitImportPublic)
def import_kits(
    body: KitImport, principal: AuthDep, session: SessionDep, resources: ResourcesDep, clock: ClockDep
) -> KitImportPublic | JSONResponse:
    """Register kits and their Pis from CSV; bind the Pis that name a deployment."""
    org = resolve_org(session, principal, body.org_id, "operator")
    assert org.id is not None
    plan = parse_kit_csv(body.csv)
    if plan.problems:
        return _refusal(plan.problems)
    now = clock()
    try:
        checked = check_import(session, plan, org.id, lambda d: principal.can(d.org_id, "operator"), now)
    except ImportRefused as refused:
        return _refusal(refused.problems)
    if body.dry_run:
        return KitImportPublic(
            dry_run=True,
            kits=len(plan.kits),
            kit_ids=[],
            pis=plan.pi_count,
            devices=[],
            claim_codes=[],
            seconds_registry=0.0,
            seconds_broker=0.0,
        )
    try:
        result = apply_import(session, resources.settings, resources.broker, plan, checked, org.id, now)
    except BrokerAdminError as exc:
        session.rollback()
        raise HTTPException(status_code=503, detail=f"{exc}: nothing was imported; try again") from exc
    for kit_id, kit in zip(result.kits, plan.kits, strict=True):
        audit_change(
            session,
            principal,
            now,
            "import",
            "kit",
            kit_id,
            org.id,
            inventory_code=kit.inventory_code,
            pis=len(kit.pis),
        )
    session.commit()
    base = resources.settings.public_url.rstrip("/")
    return KitImportPublic(
        dry_run=False,
        kits=len(result.kits),
        kit_ids=result.kits,
        pis=result.pis,
        devices=result.devices,
        claim_codes=[
            ImportedClaim(kit=c.kit, pi=c.pi, code=c.code, claim_url=f"{base}/claim#code={c.code}")
            for c in result.new_claims
        ],
        seconds_registry=round(result.seconds_registry, 3),
        seconds_broker=round(result.seconds_broker, 3),
    )
