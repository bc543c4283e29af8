"""Kiosk mode for Open Lab Fridays: ``GET /kiosk#token=sct_...`` shows big numbers and charts of
the kiosk token's deployments full-screen, rotating every ``rotate_ms`` (default 20 s).

The token is read from the URL fragment, which the browser never sends to the server (so it is not
in access logs); ``GET /kiosk/data`` (``Authorization: Bearer <kiosk token>``) returns the
deployments with their latest values and 24 h charts, refreshed every ``refresh_ms``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlmodel import col, select

from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, SessionDep, SettingsDep, StoreDep
from server.derived import derived_of
from server.models import UseCaseRow
from server.tables import DeploymentRow, OrganisationRow
from server.web.i18n import Translator, pick_language
from server.web.render import org_zone, render
from server.web.series import ChartJSONResponse, chart_payload
from server.web.views.deployment import latest_of

__all__ = ["CHART_PRIORITY", "router"]

router = APIRouter()

# The kiosk draws at most MAX_CHARTS charts per deployment, the most telling first.
CHART_PRIORITY = (
    "pm2_5",
    "co2",
    "temperature",
    "humidity",
    "pm10",
    "distance",
    "illuminance",
    "passes",
    "vibration_rms",
    "pressure",
)
MAX_CHARTS = 4


@router.get("/kiosk", response_class=HTMLResponse)
def kiosk_page(
    request: Request,
    rotate_ms: Annotated[int, Query(ge=10, le=3_600_000)] = 20_000,
    refresh_ms: Annotated[int, Query(ge=1000, le=3_600_000)] = 60_000,
) -> HTMLResponse:
    """Render the kiosk shell; its script reads the token from ``#token=`` and fetches the data."""
    t = Translator(pick_language(request))
    config = {
        "rotate_ms": rotate_ms,
        "refresh_ms": refresh_ms,
        "messages": {
            "no_token": t("kiosk.no_token"),
            "bad_token": t("kiosk.bad_token"),
            "nodata": t("chart.nodata"),
            "updated": t("kiosk.updated"),
            "simulated": t("demo.simulated"),
        },
    }
    return render(request, "kiosk.html", {"config": config})


@router.get("/kiosk/data")
def kiosk_data(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> JSONResponse:
    """Return the kiosk token's deployments with latest values and 24 h charts."""
    if principal.token_kind != "kiosk" or principal.kiosk_deployments is None:
        raise HTTPException(
            status_code=401,
            detail="send a kiosk token as 'Authorization: Bearer sct_...' (POST /api/v1/tokens "
            "with kind kiosk)",
        )
    lang = pick_language(request)
    t = Translator(lang)
    now = clock()
    rows = session.exec(
        select(DeploymentRow)
        .where(col(DeploymentRow.id).in_(sorted(principal.kiosk_deployments)))
        .order_by(col(DeploymentRow.id))
    ).all()
    out: list[dict[str, Any]] = []
    for row in rows:
        if row.ends_at is not None and row.ends_at <= now:
            continue
        org = session.get(OrganisationRow, row.org_id)
        case = session.get(UseCaseRow, row.use_case_id) if row.use_case_id else None
        tz = org_zone(settings, org.slug if org else None)
        everything = [
            r
            for r in latest_of(session, store, settings, row, now, t, lang)
            if not r["quantity"].startswith("particles_")
        ]
        # What a person reads first (fill level, power, counts per hour, dew point) when the
        # use-case names it; a screen has no click, so the raw readings stay on the deployment page.
        latest = [r for r in everything if r["headline"]] or everything
        present = {r["quantity"] for r in latest}
        headline = derived_of(session, row).headline
        # The use-case's headline charts (a dew point drawn even when the newest temperature has no
        # humidity yet), else the most telling of what there is.
        chosen = (
            headline
            if headline is not None
            else [q for q in CHART_PRIORITY if q in present][:MAX_CHARTS] or sorted(present)[:MAX_CHARTS]
        )
        charts = chart_payload(session, store, row, now, "24h", t, quantities=chosen, tz=tz)
        out.append(
            {
                "id": row.id,
                "name": row.name,
                "org": org.name if org else "",
                "use_case": case.title if case else "",
                "simulated": bool(org and org.kind == "demo"),
                "tz": tz.key,
                "latest": latest,
                "charts": charts["quantities"][:MAX_CHARTS],
            }
        )
    return ChartJSONResponse({"now": now, "deployments": out}, headers={"Cache-Control": "no-store"})
