"""What every page shares: language, the organisation's time zone, formatting and rendering."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from kits.quantities import spec
from server.api.auth import Principal
from server.settings import ServerSettings
from server.web.i18n import LANG_COOKIE, LANGUAGES, Translator, pick_language

__all__ = [
    "UNIT_LABELS",
    "ago",
    "fmt_number",
    "local_date",
    "local_time",
    "login_redirect",
    "org_zone",
    "quantity_label",
    "render",
    "unit_label",
]

# SenML unit symbols as a person reads them.
UNIT_LABELS: dict[str, str] = {"Cel": "°C", "%RH": "% RH", "ug/m3": "µg/m³", "m/s2": "m/s²", "count": ""}


def unit_label(quantity: str) -> str:
    found = spec(quantity)
    unit = found.unit if found is not None else None
    return "" if unit is None else UNIT_LABELS.get(unit, unit)


def quantity_label(quantity: str, t: Translator) -> str:
    key = f"q.{quantity}"
    text = t(key)
    if text != key:
        return text
    found = spec(quantity)
    return found.label if found is not None else quantity


def org_zone(settings: ServerSettings, slug: str | None) -> ZoneInfo:
    """The time zone of organisation ``slug`` (settings ``org_timezones``, else ``timezone``)."""
    return ZoneInfo(settings.org_timezones.get(slug or "", settings.timezone))


def local_time(epoch: float | None, tz: ZoneInfo, *, date: bool = True) -> str:
    """``2025-06-15 17:06 CEST``: the moment in ``tz``, with the zone's abbreviation."""
    if epoch is None or not math.isfinite(epoch):
        return "—"
    moment = datetime.fromtimestamp(epoch, UTC).astimezone(tz)
    return moment.strftime("%Y-%m-%d %H:%M %Z" if date else "%H:%M:%S %Z")


def local_date(epoch: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone(tz).strftime("%Y-%m-%d")


def ago(seconds: float | None, t: Translator) -> str:
    """How long ago, in words of the page language."""
    if seconds is None:
        return t("ago.never")
    seconds = max(0.0, seconds)
    if seconds < 1:
        return t("ago.now")
    if seconds < 90:
        return t("ago.s", n=f"{seconds:.0f}")
    if seconds < 90 * 60:
        return t("ago.min", n=f"{seconds / 60:.0f}")
    if seconds < 36 * 3600:
        return t("ago.h", n=f"{seconds / 3600:.0f}")
    return t("ago.d", n=f"{seconds / 86400:.0f}")


def fmt_number(value: float | None, lang: str = "en", *, quantity: str | None = None) -> str:
    """A reading for people: 3 significant figures or one decimal; Danish decimal comma; a count
    (a summed ``quantity``: passes, per hour, per day) whole."""
    if value is None or not math.isfinite(value):
        return "—"
    found = spec(quantity) if quantity is not None else None
    if found is not None and found.summed:
        return f"{value:.0f}"
    text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return text.replace(".", ",") if lang == "da" else text


def login_redirect(request: Request) -> RedirectResponse:
    """Send a visitor who is not logged in to the login page, and back afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    principal: Principal | None = None,
    status_code: int = 200,
    section: str = "",
) -> HTMLResponse:
    """Render ``template`` with the page language, the user and the language switch."""
    lang = pick_language(request)
    t = Translator(lang)
    templates: Jinja2Templates = request.app.state.templates
    switch = []
    for code in LANGUAGES:
        params = dict(request.query_params)
        params["lang"] = code
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
        switch.append(
            {
                "code": code,
                "name": t(f"lang.{code}"),
                "href": f"{request.url.path}?{query}",
                "current": code == lang,
            }
        )
    base = {
        "lang": lang,
        "t": t,
        "user": principal.label if principal is not None and principal.kind == "user" else None,
        "languages": switch,
        "section": section,
        "fmt": lambda v: fmt_number(v, lang),
    }
    response = templates.TemplateResponse(request, template, {**base, **context}, status_code=status_code)
    if request.query_params.get("lang", "").lower() in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    response.headers["Content-Language"] = lang
    return response
