"""Public citizen-science pages: no login, no private data.

- ``GET /public``: a map of every public sensor and the list of public deployments.
- ``GET /public/deployments/{id}`` and ``GET /public/use-cases/{id}``: honest air-quality figures
  (``server.airquality``): the rolling 24 h mean for display, calendar-day means in the
  organisation's time zone against the WHO 2021 guidelines with >= 75 % coverage ("not enough
  data" otherwise), the EEA index band of the latest hourly mean with the index version named,
  the averaging period, freshness (stale sensors greyed), and the low-cost-sensor humidity caveat.
- ``GET /public/deployments/{id}/series``: chart data of a public deployment.

Hourly means are the store's one-hour windows (:meth:`gateway.store.Reader.windows`, clock-hour
aligned), i.e. the mean of the raw readings of that hour.
A private address is shown blurred (``settings.blur_m``); notes, device ids, kits and alerts never.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from gateway.store import Reader, Window
from kits.quantities import spec
from kits.wire import Record
from server.airquality import (
    EAQI_SOURCE,
    EAQI_VERSION,
    HUMIDITY_CAVEAT_RH,
    WHO_2021_24H,
    WHO_SOURCE,
    Pollutant,
    daily_means,
    eaqi_band,
    freshness,
    humidity_caveat,
    rolling_24h,
)
from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, ResourcesDep, SessionDep, SettingsDep, StoreDep
from server.bounded import TtlCache
from server.charts import window_value
from server.derived import derived_of
from server.geo import blur
from server.models import UseCaseRow
from server.settings import ServerSettings
from server.spans import DeviceSpan, device_spans
from server.tables import DeploymentRow, OrganisationRow
from server.web.i18n import Translator, pick_language
from server.web.render import ago, fmt_number, local_time, org_zone, quantity_label, render, unit_label
from server.web.series import ChartJSONResponse, chart_payload
from server.web.views.deployment import not_found_page

__all__ = ["DAYS_SHOWN", "PUBLIC_STALE_MIN_S", "hourly_series", "router", "station"]

router = APIRouter()

DAYS_SHOWN = 7
# A public sensor counts as stale after the server's stale window, but never sooner than this:
# citizen sensors often report every few minutes.
PUBLIC_STALE_MIN_S = 900.0
POLLUTANTS: tuple[Pollutant, ...] = ("pm2_5", "pm10")


def _hourly(store: Reader, spans: list[DeviceSpan], start: float, end: float) -> Iterator[Window]:
    for org, device, span_from, span_to in spans:
        lo, hi = max(start, span_from), min(end, span_to)
        if lo < hi:
            yield from store.windows(org, device, lo, hi, 3600.0)


def _latest_in_spans(store: Reader, spans: list[DeviceSpan]) -> Iterator[tuple[Record, float, float]]:
    """Each newest reading of the spans' devices (one store call), with the span it may fall in."""
    by_key: dict[tuple[str, str], list[DeviceSpan]] = {}
    for span in spans:
        by_key.setdefault((span.org, span.device), []).append(span)
    if not by_key:
        return
    for r in store.latest(list(by_key)):
        for span in by_key.get((r.org, r.device), []):
            yield r, span.start, span.end


def hourly_series(
    store: Reader, spans: list[DeviceSpan], start_hour: float, end: float
) -> dict[str, dict[datetime, float]]:
    """Hourly means per quantity from ``start_hour`` (an hour boundary) to ``end``.

    Each device's hour is the mean of its raw readings in that hour; with several devices, an
    hour's value is the mean of theirs. A count (``passes``) is summed instead, over the hour and
    the devices.
    """
    hours = max(1, math.ceil((end - start_hour) / 3600.0))
    per: dict[str, dict[datetime, list[float]]] = {}
    for w in _hourly(store, spans, start_hour, start_hour + hours * 3600.0):
        hour = datetime.fromtimestamp(math.floor(w.start / 3600.0) * 3600.0, UTC)
        per.setdefault(w.quantity, {}).setdefault(hour, []).append(window_value(w))
    # A count's hour is the sum of its readings, and of its devices' (counts add up).
    return {
        q: {h: math.fsum(vs) / (1 if _summed(q) else len(vs)) for h, vs in sorted(d.items())}
        for q, d in per.items()
    }


def _summed(quantity: str) -> bool:
    found = spec(quantity)
    return found is not None and found.summed


def _location(settings: ServerSettings, row: DeploymentRow) -> tuple[float, float] | None:
    if row.lat is None or row.lon is None:
        return None
    return blur(row.lat, row.lon, settings.blur_m) if row.private_address else (row.lat, row.lon)


def station(
    session: Session,
    store: Reader,
    settings: ServerSettings,
    row: DeploymentRow,
    now: float,
    t: Translator,
    lang: str,
    cache: TtlCache[Any] | None = None,
) -> dict[str, Any]:
    """Everything the public page shows of one public deployment.

    The hourly means (the 7-day scan) come from ``cache`` when given: anyone may load these pages,
    so the figures are computed at most once per ``public_cache_s`` per deployment and hour.
    """
    assert row.id is not None
    org = session.get(OrganisationRow, row.org_id)
    tz = org_zone(settings, org.slug if org else None)
    spans = device_spans(session, row.id)
    derived = derived_of(session, row)
    store = derived.reader(store, spans)  # fill level, dew point, power: computed on read
    now_hour = math.floor(now / 3600.0) * 3600.0
    local_midnight = (
        datetime.fromtimestamp(now, UTC).astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    first_day = (local_midnight - timedelta(days=DAYS_SHOWN - 1)).astimezone(UTC).timestamp()
    start_hour = min(now_hour - 24 * 3600.0, math.floor(first_day / 3600.0) * 3600.0)
    key = ("hourly", row.id, start_hour, tuple(spans))
    hourly = (
        cache.get(key, lambda: hourly_series(store, spans, start_hour, now))
        if cache is not None
        else hourly_series(store, spans, start_hour, now)
    )
    latest: dict[str, float] = {}
    latest_at: dict[str, float] = {}
    for r, span_from, span_to in _latest_in_spans(store, spans):
        if span_from <= r.time < span_to and r.time >= latest_at.get(r.quantity, -math.inf):
            latest[r.quantity], latest_at[r.quantity] = r.value, r.time
    latest_time = max(latest_at.values(), default=None)
    stale_after = max(settings.stale_after_s, PUBLIC_STALE_MIN_S)
    fresh = freshness(latest_time, now, timedelta(seconds=stale_after))
    rolling_window = rolling_24h({}, now)
    humid_hours = [
        v for h, v in hourly.get("humidity", {}).items() if rolling_window.start <= h < rolling_window.end
    ]
    caveat = humidity_caveat(humid_hours)
    pollutants = []
    for q in POLLUTANTS:
        if q not in hourly:
            continue
        series = hourly[q]
        rolling = rolling_24h(series, now)
        complete = [(h, v) for h, v in series.items() if h < rolling.end]
        last_hour = complete[-1] if complete else None
        band = eaqi_band(q, last_hour[1]) if last_hour else None
        days = [
            d
            for d in daily_means(series, q, tz)
            if d.day >= local_midnight.date() - timedelta(days=DAYS_SHOWN - 1)
        ]
        pollutants.append(
            {
                "quantity": q,
                "label": quantity_label(q, t),
                "unit": unit_label(q),
                "who": WHO_2021_24H[q],
                "rolling": rolling,
                "rolling_text": fmt_number(rolling.value, lang),
                "band": band,
                "band_hour": local_time(last_hour[0].timestamp(), tz) if last_hour else None,
                "band_text": fmt_number(last_hour[1], lang) if last_hour else None,
                "days": [
                    {
                        "d": d,
                        "text": fmt_number(d.value, lang),
                        "date": d.day.isoformat(),
                        "today": d.day == local_midnight.date(),
                    }
                    for d in reversed(days)
                ],
            }
        )
    others = []
    for name in sorted(hourly, key=derived.order):
        values = hourly[name]
        if name in POLLUTANTS or name.startswith("particles_"):
            continue
        rolling = rolling_24h(values, now)
        if _summed(name) and rolling.value is not None:
            rolling = replace(rolling, value=rolling.value * rolling.hours)  # the 24 h total
        others.append(
            {
                "quantity": name,
                "label": quantity_label(name, t),
                "unit": unit_label(name),
                "rolling": rolling,
                "rolling_text": fmt_number(rolling.value, lang, quantity=name)
                + (f" ({t('pub.total')})" if _summed(name) and rolling.value is not None else ""),
                "latest_text": fmt_number(latest.get(name), lang, quantity=name),
                "headline": derived.is_headline(name),
            }
        )
    location = _location(settings, row)
    case = session.get(UseCaseRow, row.use_case_id) if row.use_case_id else None
    return {
        "d": row,
        "org": org.name if org else "",
        "simulated": bool(org and org.kind == "demo"),
        "case": case,
        "tz": tz.key,
        "fresh": fresh,
        "stale": fresh.stale,
        "last": local_time(latest_time, tz),
        "ago": ago(None if latest_time is None else now - latest_time, t),
        "pollutants": pollutants,
        "others": others,
        "caveat": caveat,
        "location": location,
        "rolling_start": local_time(rolling_window.start.timestamp(), tz),
        "rolling_end": local_time(rolling_window.end.timestamp(), tz),
    }


def _public_rows(session: Session, use_case_id: str | None = None) -> list[DeploymentRow]:
    query = select(DeploymentRow).where(DeploymentRow.public == True)  # noqa: E712
    if use_case_id is not None:
        query = query.where(DeploymentRow.use_case_id == use_case_id)
    return list(session.exec(query.order_by(col(DeploymentRow.name))).all())


def _markers(settings: ServerSettings, stations: list[dict[str, Any]], t: Translator) -> list[dict[str, Any]]:
    out = []
    for s in stations:
        if s["location"] is None:
            continue
        row = s["d"]
        out.append(
            {
                "lat": s["location"][0],
                "lon": s["location"][1],
                "name": row.name,
                "href": f"/public/deployments/{row.id}",
                "stale": s["stale"],
                "blurred": row.private_address,
                "note": t("pub.blurred", m=int(settings.blur_m)) if row.private_address else "",
            }
        )
    return out


def _light_station(
    session: Session,
    store: Reader,
    settings: ServerSettings,
    row: DeploymentRow,
    now: float,
    t: Translator,
) -> dict[str, Any]:
    """What the index shows of a deployment: location and freshness only (cheap)."""
    assert row.id is not None
    org = session.get(OrganisationRow, row.org_id)
    latest_time = None
    for r, span_from, span_to in _latest_in_spans(store, device_spans(session, row.id)):
        if span_from <= r.time < span_to:
            latest_time = r.time if latest_time is None else max(latest_time, r.time)
    stale_after = max(settings.stale_after_s, PUBLIC_STALE_MIN_S)
    case = session.get(UseCaseRow, row.use_case_id) if row.use_case_id else None
    return {
        "d": row,
        "org": org.name if org else "",
        "case": case,
        "location": _location(settings, row),
        "stale": latest_time is None or now - latest_time > stale_after,
        "ago": ago(None if latest_time is None else now - latest_time, t),
        "simulated": bool(org and org.kind == "demo"),
    }


def _page(
    request: Request,
    principal: Any,
    settings: ServerSettings,
    stations: list[dict[str, Any]],
    title: str,
    t: Translator,
    full: bool,
    case: UseCaseRow | None = None,
) -> HTMLResponse:
    return render(
        request,
        "public.html",
        {
            "stations": stations,
            "title": title,
            "full": full,
            "case": case,
            "who_source": WHO_SOURCE,
            "eaqi_version": EAQI_VERSION,
            "eaqi_source": EAQI_SOURCE,
            "humidity_rh": int(HUMIDITY_CAVEAT_RH),
            "blur_m": int(settings.blur_m),
            "config": {
                "map": {
                    "tiles": settings.map_tiles_url,
                    "markers": _markers(settings, stations, t),
                    "offline_note": t("map.offline"),
                }
            },
        },
        principal=principal,
        section="public",
    )


@router.get("/public", response_class=HTMLResponse)
def public_index(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    """Render the map and list of every public deployment."""
    t = Translator(pick_language(request))
    now = clock()
    stations = [_light_station(session, store, settings, row, now, t) for row in _public_rows(session)]
    return _page(request, principal, settings, stations, t("pub.title"), t, full=False)


@router.get("/public/deployments/{deployment_id}", response_class=HTMLResponse)
def public_deployment(
    deployment_id: int,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    resources: ResourcesDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    """Render the figures of one public deployment."""
    lang = pick_language(request)
    t = Translator(lang)
    row = session.get(DeploymentRow, deployment_id)
    if row is None or not row.public:
        return not_found_page(request, f"public deployment {deployment_id}")
    one = station(session, store, settings, row, clock(), t, lang, resources.figures)
    return _page(request, principal, settings, [one], row.name, t, full=True)


@router.get("/public/use-cases/{use_case_id}", response_class=HTMLResponse)
def public_use_case(
    use_case_id: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    resources: ResourcesDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    """Render the figures of every public deployment of a use-case."""
    lang = pick_language(request)
    t = Translator(lang)
    case = session.get(UseCaseRow, use_case_id)
    if case is None or case.org_id is not None:
        return not_found_page(request, f"use-case {use_case_id}")
    now = clock()
    stations = [
        station(session, store, settings, row, now, t, lang, resources.figures)
        for row in _public_rows(session, use_case_id)
    ]
    return _page(request, principal, settings, stations, case.title, t, full=True, case=case)


@router.get("/public/deployments/{deployment_id}/series")
def public_series(
    deployment_id: int,
    request: Request,
    session: SessionDep,
    resources: ResourcesDep,
    store: StoreDep,
    clock: ClockDep,
    range: Annotated[str, Query(pattern="^(1h|6h|24h|7d|30d|1y)$")] = "24h",
) -> Response:
    """Chart data of a public deployment (open data: no login)."""
    row = session.get(DeploymentRow, deployment_id)
    if row is None or not row.public:
        raise HTTPException(status_code=404, detail=f"public deployment {deployment_id} does not exist")
    lang, now = pick_language(request), clock()

    def compute() -> dict[str, Any]:
        payload = chart_payload(session, store, row, now, range, Translator(lang))
        for block in payload["quantities"]:  # device ids are not public
            for i, s in enumerate(block["series"], start=1):
                s["device"] = f"sensor {i}"
        return payload

    # Open to anyone, up to a year of data: computed at most once per public_cache_s.
    payload = resources.figures.get(("series", deployment_id, range, lang), compute)
    return ChartJSONResponse(payload, headers={"Cache-Control": "no-store"})
