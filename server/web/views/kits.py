"""``GET /kits``: the suitcases, where each one is, overdue loans and the last contents check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, or_, select

from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, SessionDep, SettingsDep
from server.models import KitProfileRow
from server.tables import DeploymentRow, KitPiRow, KitRow, LoanRow, OrganisationRow
from server.web.i18n import Translator, pick_language
from server.web.render import local_time, login_redirect, org_zone, render

__all__ = ["router"]

router = APIRouter()

STATUSES = ("in_stock", "on_loan", "deployed", "in_repair", "retired")


@router.get("/kits", response_class=HTMLResponse)
def kits_page(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    status: Annotated[str, Query(max_length=20)] = "",
    overdue: bool = False,
) -> Response:
    """Render the kit inventory and loans (logged-in users: kits their organisations own or borrow)."""
    if principal.kind != "user":
        return login_redirect(request)
    t = Translator(pick_language(request))
    now = clock()
    query = select(KitRow)
    orgs = principal.org_ids()
    if orgs is not None:
        borrowed = select(LoanRow.kit_id).where(
            col(LoanRow.org_id).in_(sorted(orgs)), col(LoanRow.returned_at).is_(None)
        )
        query = query.where(or_(col(KitRow.org_id).in_(sorted(orgs)), col(KitRow.id).in_(borrowed)))
    every = list(session.exec(query.order_by(col(KitRow.inventory_code))).all())
    org_rows = {o.id: o for o in session.exec(select(OrganisationRow)).all()}
    profiles = {p.id: p for p in session.exec(select(KitProfileRow)).all()}
    kits: list[dict[str, Any]] = []
    for kit in every:
        assert kit.id is not None
        owner = org_rows.get(kit.org_id)
        tz = org_zone(settings, owner.slug if owner else None)
        loan = session.exec(
            select(LoanRow).where(LoanRow.kit_id == kit.id, col(LoanRow.returned_at).is_(None))
        ).first()
        deployments = session.exec(
            select(DeploymentRow).where(
                DeploymentRow.kit_id == kit.id,
                col(DeploymentRow.starts_at) <= now,
                col(DeploymentRow.ends_at).is_(None) | (col(DeploymentRow.ends_at) > now),
            )
        ).all()
        pis = session.exec(
            select(KitPiRow).where(KitPiRow.kit_id == kit.id).order_by(col(KitPiRow.pi_index))
        ).all()
        profile = profiles.get(kit.profile_id)
        bom = [part.item for part in profile.profile().bill_of_materials] if profile else []
        check = {str(k): bool(v) for k, v in (kit.contents_check or {}).items()}
        missing = [item for item, present in check.items() if not present]
        borrower = org_rows.get(loan.org_id) if loan else None
        if deployments:
            where = ", ".join(
                d.name + (f" ({d.address})" if d.address and not d.private_address else "")
                for d in deployments
            )
        elif loan is not None:
            where = t("kits.with_borrower", who=borrower.name if borrower else str(loan.org_id))
        else:
            where = t("kits.status." + kit.status) if kit.status in STATUSES else kit.status
        kits.append(
            {
                "kit": kit,
                "owner": owner.name if owner else "",
                "profile": profile.name if profile else kit.profile_id,
                "where": where,
                "deployments": deployments,
                "loan": loan,
                "borrower": borrower.name if borrower else "",
                "loan_due": local_time(loan.due_at, tz) if loan else "",
                "overdue": loan is not None and loan.due_at < now,
                "overdue_days": int((now - loan.due_at) // 86400) if loan and loan.due_at < now else 0,
                "pis": len(pis),
                "bound": sum(1 for p in pis if p.device_id),
                "checked": local_time(kit.contents_checked_at, tz) if kit.contents_checked_at else None,
                "check": check,
                "bom": bom,
                "missing": missing,
            }
        )
    overdue_kits = [k for k in kits if k["overdue"]]
    shown = [k for k in kits if (not status or k["kit"].status == status) and (not overdue or k["overdue"])]
    counts = {
        "total": len(kits),
        "deployed": sum(k["kit"].status == "deployed" for k in kits),
        "on_loan": sum(k["loan"] is not None for k in kits),
        "overdue": len(overdue_kits),
        "incomplete": sum(bool(k["missing"]) for k in kits),
    }
    return render(
        request,
        "kits.html",
        {
            "kits": shown,
            "overdue": overdue_kits,
            "counts": counts,
            "statuses": STATUSES,
            "status": status,
            "only_overdue": overdue,
        },
        principal=principal,
        section="kits",
    )
