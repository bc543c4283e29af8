"""``GET /``: every device the caller may see, its latest readings and live charts of the last 15 minutes.

The page is rendered with the store's current state, then ``static/live.js`` polls the JSON API
every 2 s and updates it in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kits.quantities import QUANTITIES
from kits.wire import Record
from server.api import API_PREFIX
from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, SettingsDep, StoreDep
from server.timeutil import iso

__all__ = [
    "CHART_WINDOW_S",
    "POLL_INTERVAL_MS",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "UNIT_LABELS",
    "mount_web",
    "router",
]

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
CHART_WINDOW_S = 15 * 60
POLL_INTERVAL_MS = 2000
# SenML unit symbols as a person reads them.
UNIT_LABELS: dict[str, str] = {
    "Cel": "°C",
    "%RH": "% RH",
    "ug/m3": "µg/m³",
    "m/s2": "m/s²",
}

router = APIRouter(include_in_schema=False)


def _unit_label(unit: str | None) -> str:
    return "" if unit is None else UNIT_LABELS.get(unit, unit)


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _number(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _page_config() -> dict[str, Any]:
    order = list(QUANTITIES)
    return {
        "api": API_PREFIX,
        "window_s": CHART_WINDOW_S,
        "poll_ms": POLL_INTERVAL_MS,
        "quantities": {
            name: {"label": q.label, "unit": _unit_label(q.unit), "order": order.index(name)}
            for name, q in QUANTITIES.items()
        },
    }


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request, principal: PrincipalDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> HTMLResponse:
    """Render the live readings page: every device on a demo server, else the caller's
    organisations' devices (an anonymous visitor of a closed server is sent to the login)."""
    now = clock()
    order = list(QUANTITIES)
    devices = []
    slugs = None if principal.sees_all() else set(principal.slugs.values())
    newest: dict[tuple[str, str], list[Record]] = {}
    for record in store.latest():  # every device's newest readings in one read
        if slugs is None or record.org in slugs:
            newest.setdefault((record.org, record.device), []).append(record)
    for seen in store.devices():
        if slugs is not None and seen.org not in slugs:
            continue
        latest = sorted(
            newest.get((seen.org, seen.device), []),
            key=lambda r: (order.index(r.quantity) if r.quantity in QUANTITIES else len(order), r.sensor),
        )
        devices.append(
            {
                "org": seen.org,
                "device": seen.device,
                "readings": seen.readings,
                "last_seen_iso": iso(seen.last_seen),
                "ago": _ago(now - seen.last_seen),
                "stale": now - seen.last_seen > settings.stale_after_s,
                "latest": [
                    {
                        "sensor": r.sensor,
                        "quantity": r.quantity,
                        "label": QUANTITIES[r.quantity].label if r.quantity in QUANTITIES else r.quantity,
                        "value": _number(r.value),
                        "unit": _unit_label(
                            QUANTITIES[r.quantity].unit if r.quantity in QUANTITIES else None
                        ),
                        "time_iso": iso(r.time),
                        "ago": _ago(now - r.time),
                    }
                    for r in latest
                ],
            }
        )
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "devices": devices,
            "now_iso": iso(now),
            "stale_after_s": settings.stale_after_s,
            "window_min": CHART_WINDOW_S // 60,
            "config": _page_config(),
        },
    )


def mount_web(app: FastAPI) -> None:
    """Add the pages, the static files (``/static``) and the templates to ``app``."""
    app.state.templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    from server.web.views import build_views_router

    app.include_router(build_views_router())
