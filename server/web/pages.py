"""``GET /``: every device the caller may see, its latest readings and live charts of the last 15 minutes.

A device in a deployment shows what its use-case names first (fill level, power, counts per hour,
dew point: ``server.derived``, as the deployment, kiosk and public pages do), its raw readings one
click away. The page is rendered with the store's current state, then ``static/live.js`` polls the
JSON API every 2 s (the device routes' ``view=read``) and updates it in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kits.quantities import DERIVED_QUANTITIES, QUANTITIES, spec
from kits.wire import Record
from server.api import API_PREFIX
from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, SessionDep, SettingsDep, StoreDep
from server.derived import devices_read
from server.timeutil import iso
from server.web.render import fmt_number, org_zone, unit_label

__all__ = [
    "CHART_WINDOW_S",
    "POLL_INTERVAL_MS",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "mount_web",
    "router",
]

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
CHART_WINDOW_S = 15 * 60
POLL_INTERVAL_MS = 2000

router = APIRouter(include_in_schema=False)


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


def _page_config() -> dict[str, Any]:
    order = [*QUANTITIES, *DERIVED_QUANTITIES]
    return {
        "api": API_PREFIX,
        "window_s": CHART_WINDOW_S,
        "poll_ms": POLL_INTERVAL_MS,
        "quantities": {
            name: {
                "label": q.label,
                "unit": unit_label(name),
                "order": order.index(name),
                "summed": q.summed,
            }
            for name, q in [*QUANTITIES.items(), *DERIVED_QUANTITIES.items()]
        },
    }


def _metric(r: Record, now: float) -> dict[str, Any]:
    found = spec(r.quantity)
    return {
        "sensor": r.sensor,
        "quantity": r.quantity,
        "label": found.label if found is not None else r.quantity,
        "value": fmt_number(r.value, quantity=r.quantity),
        "unit": unit_label(r.quantity),
        "time_iso": iso(r.time),
        "ago": _ago(now - r.time),
    }


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    """Render the live readings page: every device on a demo server, else the caller's
    organisations' devices (an anonymous visitor of a closed server is sent to the login)."""
    now = clock()
    devices = []
    slugs = None if principal.sees_all() else set(principal.slugs.values())
    seen_all = [s for s in store.devices() if slugs is None or s.org in slugs]
    read = devices_read(session, [(s.org, s.device) for s in seen_all], now)
    newest: dict[tuple[str, str], list[Record]] = {}
    # Every device's newest readings in one read, with their derived quantities, headline first.
    for record in read.latest(store, now, lambda org: org_zone(settings, org)):
        if slugs is None or record.org in slugs:
            newest.setdefault((record.org, record.device), []).append(record)
    for seen in seen_all:
        derived = read.of(seen.org, seen.device)
        latest = newest.get((seen.org, seen.device), [])
        devices.append(
            {
                "org": seen.org,
                "device": seen.device,
                "readings": seen.readings,
                "last_seen_iso": iso(seen.last_seen),
                "ago": _ago(now - seen.last_seen),
                "stale": now - seen.last_seen > settings.stale_after_s,
                "headline": derived.headline,
                "latest": [_metric(r, now) for r in latest if derived.is_headline(r.quantity)],
                "raw": [_metric(r, now) for r in latest if not derived.is_headline(r.quantity)],
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
