"""``GET /deployments/{id}``: live charts per quantity with the use-case's thresholds, a time-range
picker (1 h to 1 year, downsampled on the server), latest values, alerts, location and export.

``GET /deployments/{id}/series?range=24h`` is the chart data (JSON) the page and the kiosk poll;
it takes a session or a kiosk token (``Authorization: Bearer``), scoped like the API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session, col, or_, select

from gateway.store import Reader
from kits.quantities import DERIVED_QUANTITIES
from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, SessionDep, SettingsDep, StoreDep
from server.api.routes import ROUTES
from server.api.routes.deployments import get_deployment
from server.derived import DevicesRead, derived_of
from server.models import UseCaseRow
from server.settings import ServerSettings
from server.spans import device_spans
from server.tables import AlertRow, AlertRuleRow, DeploymentRow, OrganisationRow
from server.web.i18n import Translator, pick_language
from server.web.render import (
    ago,
    fmt_number,
    local_time,
    login_redirect,
    org_zone,
    quantity_label,
    render,
    unit_label,
)
from server.web.series import RANGES, ChartJSONResponse, chart_payload

__all__ = ["latest_of", "router"]

router = APIRouter()

RangeKey = Annotated[str, Query(pattern="^(1h|6h|24h|7d|30d|1y)$")]


def latest_of(
    session: Session,
    store: Reader,
    settings: ServerSettings,
    deployment: DeploymentRow,
    now: float,
    t: Translator,
    lang: str,
) -> list[dict[str, Any]]:
    """The newest reading of each current device, sensor and quantity of the deployment, with its
    derived quantities (``server.derived``); headline ones first, each marked ``headline``."""
    assert deployment.id is not None
    out = []
    spans = [s for s in device_spans(session, deployment.id) if s.end >= now]
    derived = derived_of(session, deployment)
    records = DevicesRead([(derived, spans)]).latest(
        store, now, lambda org: org_zone(settings, org), [(s.org, s.device) for s in spans]
    )
    for r in records:
        out.append(
            {
                "device": r.device,
                "sensor": r.sensor,
                "quantity": r.quantity,
                "label": _latest_label(r.quantity, t),
                "unit": unit_label(r.quantity),
                "value": r.value,
                "text": fmt_number(r.value, lang, quantity=r.quantity),
                "time": r.time,
                "ago": ago(now - r.time, t),
                "stale": now - r.time > settings.stale_after_s,
                "headline": derived.is_headline(r.quantity),
                "derived": r.quantity in DERIVED_QUANTITIES,
            }
        )
    return out


def _latest_label(quantity: str, t: Translator) -> str:
    text = t(f"latest.{quantity}")  # a count now reads "in the last hour", not "per hour"
    return quantity_label(quantity, t) if text == f"latest.{quantity}" else text


def not_found_page(request: Request, what: str) -> HTMLResponse:
    t = Translator(pick_language(request))
    return render(request, "not_found.html", {"message": t("error.not_found", what=what)}, status_code=404)


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
def deployment_page(
    deployment_id: int,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    range: RangeKey = "24h",
    poll_ms: Annotated[int, Query(ge=100, le=600_000)] = 10_000,
) -> Response:
    """Render a deployment's page (logged-in users of its organisation)."""
    if principal.kind != "user":
        return login_redirect(request)
    try:
        row = get_deployment(session, principal, deployment_id)
    except HTTPException:
        return not_found_page(request, f"deployment {deployment_id}")
    lang = pick_language(request)
    t = Translator(lang)
    now = clock()
    org = session.get(OrganisationRow, row.org_id)
    tz = org_zone(settings, org.slug if org else None)
    case = session.get(UseCaseRow, row.use_case_id) if row.use_case_id else None
    devices = sorted({s.device for s in device_spans(session, deployment_id) if s.end >= now})
    alerts = session.exec(
        select(AlertRow, AlertRuleRow.name)
        .join(AlertRuleRow, col(AlertRuleRow.id) == AlertRow.rule_id)
        .where(AlertRow.org_id == row.org_id)
        .where(
            or_(
                AlertRuleRow.deployment_id == deployment_id,
                col(AlertRow.subject).in_(devices or [""]),
                # a sensor's alert: "{device}:{sensor}" or "{device}:{sensor}/{quantity}"
                *(col(AlertRow.subject).startswith(f"{d}:", autoescape=True) for d in devices),
            )
        )
        .order_by(col(AlertRow.state).desc(), col(AlertRow.fired_at).desc())
        .limit(20)
    ).all()
    derived = derived_of(session, row)
    latest = latest_of(session, store, settings, row, now, t, lang)
    context = {
        "d": row,
        "derived": derived,
        "missing": [t("derived.missing." + kind) for kind in derived.missing],
        "headline": [r for r in latest if r["headline"]],
        "raw": [r for r in latest if not r["headline"]],
        "org": org,
        "simulated": bool(org and org.kind == "demo"),
        "case": case,
        "devices": devices,
        "latest": latest,
        "alerts": [
            {
                "a": a,
                "rule": name,
                "fired": local_time(a.fired_at, tz),
                "resolved": local_time(a.resolved_at, tz) if a.resolved_at else None,
            }
            for a, name in alerts
        ],
        "starts": local_time(row.starts_at, tz),
        "ends": local_time(row.ends_at, tz) if row.ends_at else None,
        "ranges": list(RANGES),
        "range": range,
        "export": "export" in ROUTES,
        "tz": tz.key,
        "config": {
            "series": f"/deployments/{deployment_id}/series",
            "range": range,
            "poll_ms": poll_ms,
            "tz": tz.key,
            "export": f"/api/v1/export/deployments/{deployment_id}/readings",
            "split": derived.headline is not None,
            "map": {
                "tiles": settings.map_tiles_url,
                "markers": [{"lat": row.lat, "lon": row.lon, "name": row.name}]
                if row.lat is not None and row.lon is not None
                else [],
                "offline_note": t("map.offline"),
            },
            "nodata": t("chart.nodata"),
        },
    }
    return render(request, "deployment.html", context, principal=principal)


@router.get("/deployments/{deployment_id}/series")
def deployment_series(
    deployment_id: int,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    range: RangeKey = "24h",
) -> JSONResponse:
    """Return the deployment's charts (at most 1,000 points per series) and latest values."""
    if not principal.authenticated:
        raise HTTPException(status_code=401, detail="log in or send a kiosk token")
    row = get_deployment(session, principal, deployment_id)
    lang = pick_language(request)
    t = Translator(lang)
    now = clock()
    org = session.get(OrganisationRow, row.org_id)
    payload = chart_payload(
        session, store, row, now, range, t, tz=org_zone(settings, org.slug if org else None)
    )
    payload["latest"] = latest_of(session, store, settings, row, now, t, lang)
    return ChartJSONResponse(payload, headers={"Cache-Control": "no-store"})
