"""The use-case catalogue: ``GET /use-cases`` (browse, search, filter by sensor and theme),
``GET /use-cases/{id}`` (sensors, placement, a preview dashboard, best practices) and
``GET /use-cases/{id}/deploy`` ("deploy this": create the deployment, then enroll its Pis).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, or_, select

from kits.models import UseCase
from server.api.auth import Principal, PrincipalDep
from server.api.deps import ClockDep, SessionDep, SettingsDep
from server.models import KitProfileRow, UseCaseRow
from server.tables import DeploymentRow, KitRow, LoanRow, OrganisationRow
from server.web.i18n import Translator, pick_language
from server.web.render import login_redirect, quantity_label, render, unit_label
from server.web.views.deployment import not_found_page

__all__ = ["router", "visible_use_cases"]

router = APIRouter()


def visible_use_cases(session: Session, principal: Principal) -> list[UseCaseRow]:
    """The catalogue's use-cases and those of the caller's organisations."""
    query = select(UseCaseRow)
    orgs = principal.org_ids() if principal.authenticated else set()
    if orgs is not None:
        query = query.where(or_(col(UseCaseRow.org_id).is_(None), col(UseCaseRow.org_id).in_(sorted(orgs))))
    return sorted(session.exec(query).all(), key=lambda r: r.title.lower())


def search_text(case: UseCase) -> str:
    """What the catalogue search looks in: titles, texts, sensors, quantities, themes, thresholds."""
    parts = [
        case.id,
        case.title,
        case.summary,
        case.problem,
        *case.sensors,
        *case.quantities,
        *case.themes,
        *case.placement,
        *case.best_practices,
        *(x.label for x in case.thresholds),
    ]
    return " ".join(parts).lower()


def _matches(row: UseCaseRow, q: str, sensor: str, theme: str) -> bool:
    case = row.use_case()
    if sensor and sensor not in case.sensors:
        return False
    if theme and theme not in case.themes:
        return False
    needle = q.strip().lower()
    if not needle:
        return True
    text = search_text(case)
    return all(word in text for word in needle.split())


Text = Annotated[str, Query(max_length=100)]


@router.get("/use-cases", response_class=HTMLResponse)
def catalogue_page(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    q: Text = "",
    sensor: Text = "",
    theme: Text = "",
) -> HTMLResponse:
    """Render the catalogue, filtered by ``q``, ``sensor`` and ``theme`` (no login needed)."""
    t = Translator(pick_language(request))
    rows = visible_use_cases(session, principal)
    sensors = sorted({s for r in rows for s in r.use_case().sensors})
    themes = sorted({th for r in rows for th in r.use_case().themes})
    cards = []
    for row in rows:
        case = row.use_case()
        cards.append(
            {
                "case": case,
                "shown": _matches(row, q, sensor, theme),
                "search": search_text(case),
                "quantities": [quantity_label(x, t) for x in case.quantities],
            }
        )
    return render(
        request,
        "catalogue.html",
        {
            "cards": cards,
            "sensors": sensors,
            "themes": themes,
            "q": q,
            "sensor": sensor,
            "theme": theme,
            "shown": sum(c["shown"] for c in cards),
        },
        principal=principal,
        section="catalogue",
    )


def _preview_deployment(session: Session, use_case_id: str, now: float) -> DeploymentRow | None:
    return session.exec(
        select(DeploymentRow)
        .where(
            DeploymentRow.use_case_id == use_case_id,
            DeploymentRow.public == True,  # noqa: E712
            col(DeploymentRow.starts_at) <= now,
        )
        .order_by(col(DeploymentRow.starts_at).desc())
    ).first()


@router.get("/use-cases/{use_case_id}", response_class=HTMLResponse)
def use_case_page(
    use_case_id: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    """Render one use-case with a preview dashboard (from a public deployment of it, when there is one)."""
    t = Translator(pick_language(request))
    row = next((r for r in visible_use_cases(session, principal) if r.id == use_case_id), None)
    if row is None:
        return not_found_page(request, f"use-case {use_case_id}")
    case = row.use_case()
    profile_row = session.get(KitProfileRow, case.kit_profile)
    profile = profile_row.profile() if profile_row else None
    parts = {s.part: s for s in profile.sensors} if profile else {}
    preview = _preview_deployment(session, case.id, clock())
    panels = [
        {
            "quantity": q,
            "label": quantity_label(q, t),
            "unit": unit_label(q),
            "thresholds": [
                {"value": x.value, "label": x.label, "source": x.source}
                for x in case.thresholds
                if x.quantity == q
            ],
        }
        for q in case.quantities
    ]
    return render(
        request,
        "use_case.html",
        {
            "case": case,
            "profile": profile,
            "parts": parts,
            "preview": preview,
            "panels": panels,
            "config": {
                "preview": f"/public/deployments/{preview.id}/series?range=24h" if preview else None,
                "panels": panels,
                "tz": settings.timezone,
                "nodata": t("chart.nodata"),
            },
        },
        principal=principal,
        section="catalogue",
    )


@router.get("/use-cases/{use_case_id}/deploy", response_class=HTMLResponse)
def deploy_page(
    use_case_id: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    """Render "deploy this": a form that creates the deployment, then enrolls its Pis."""
    if principal.kind != "user":
        return login_redirect(request)
    row = next((r for r in visible_use_cases(session, principal) if r.id == use_case_id), None)
    if row is None:
        return not_found_page(request, f"use-case {use_case_id}")
    case = row.use_case()
    operator_orgs = principal.org_ids("operator")
    query = select(OrganisationRow).order_by(col(OrganisationRow.name))
    if operator_orgs is not None:
        query = query.where(col(OrganisationRow.id).in_(sorted(operator_orgs)))
    orgs = list(session.exec(query).all())
    org_ids = [o.id for o in orgs]
    borrowed = select(LoanRow.kit_id).where(
        col(LoanRow.org_id).in_(org_ids), col(LoanRow.returned_at).is_(None)
    )
    kits = session.exec(
        select(KitRow)
        .where(
            or_(col(KitRow.org_id).in_(org_ids), col(KitRow.id).in_(borrowed)),
            col(KitRow.status).in_(["in_stock", "on_loan", "deployed"]),
        )
        .order_by(col(KitRow.inventory_code))
    ).all()
    details: dict[str, Any] = {"case": case, "orgs": orgs, "kits": kits}
    details["config"] = {"use_case_id": case.id}
    return render(request, "deploy.html", details, principal=principal, section="catalogue")
