"""Open-data export, streamed: readings (CSV, SenML JSON) and public deployments (GeoJSON).

Public deployments are open data: anyone may export them, with their licence. A private address
is shown blurred (~500 m). An organisation's members may also export its non-public deployments.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import tzinfo
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from sqlmodel import Session, col, select

from gateway.store import Reader
from kits.wire import Record
from server.api.auth import Principal, PrincipalDep, not_found
from server.api.deps import ClockDep, SessionDep, SettingsDep, StoreDep
from server.api.routes.deployments import _range
from server.api.schemas import View, ViewQuery
from server.api.throttle import ExportSlotDep
from server.charts import count_sums
from server.derived import derived_of
from server.export import csv_lines, geojson_chunks, iter_readings, senml_chunks
from server.geo import blur
from server.models import UseCaseRow
from server.settings import ServerSettings
from server.spans import DeviceSpan, device_spans
from server.tables import DeploymentRow, OrganisationRow
from server.web.render import org_zone

__all__ = ["router"]

router = APIRouter(tags=["open data"])

Format = Literal["csv", "senml"]
_MEDIA = {"csv": "text/csv; charset=utf-8", "senml": "application/senml+json"}


def _visible(principal: Principal, row: DeploymentRow) -> bool:
    if row.public:
        return True
    if principal.kiosk_deployments is not None:
        return row.id in principal.kiosk_deployments
    return principal.authenticated and principal.can(row.org_id)


@dataclass(frozen=True)
class _Source:
    """One deployment's part of an export, resolved before streaming."""

    deployment_id: int | None
    spans: list[DeviceSpan]
    reader: Reader
    counts: bool
    tz: tzinfo


def _rows(
    session: Session,
    store: Reader,
    settings: ServerSettings,
    deployments: list[DeploymentRow],
    start: float,
    end: float,
    quantity: str | None,
    view: View = "read",
) -> Iterator[tuple[str, Record]]:
    # Resolved now: the registry session is closed by the time the response streams.
    sources = []
    for d in deployments:
        spans = device_spans(session, d.id or 0)
        derived = derived_of(session, d) if view == "read" else None
        org = session.get(OrganisationRow, d.org_id)
        sources.append(
            _Source(
                d.id,
                spans,
                derived.reader(store, spans) if derived is not None else store,
                derived is not None and derived.counts,
                org_zone(settings, org.slug if org else None),
            )
        )
    # Once streaming, the status is sent: a store that is down is found out before (a 503).
    store.health()
    return _stream_rows(sources, start, end, quantity)


def _stream_rows(
    sources: list[_Source], start: float, end: float, quantity: str | None
) -> Iterator[tuple[str, Record]]:
    for source in sources:
        dep = str(source.deployment_id)
        for org, device, span_from, span_to in source.spans:
            for record in iter_readings(
                source.reader, org, device, max(start, span_from), min(end, span_to), quantity=quantity
            ):
                yield dep, record
        if source.counts:
            # Counts per hour and per local day: sums, one row per hour or day (timed at its start).
            for per in ("hour", "day"):
                name = f"passes_per_{per}"
                if quantity not in (None, name):
                    continue
                for s in count_sums(source.reader, source.spans, start, end, per=per, tz=source.tz):
                    for t, v in zip(s.times, s.values, strict=True):
                        yield dep, Record(s.org, s.device, s.sensor, name, v, t)


def _meta(settings: ServerSettings, what: str, start: float, end: float) -> dict[str, Any]:
    return {
        "title": what,
        "licence": settings.open_data_licence,
        "licence_url": settings.open_data_licence_url,
        "source": "IoT Suitcase",
        "start": start,
        "end": end,
        "personal_data": "none: sensors measure places (climate, air, distance, light), never people",
    }


def _stream(
    fmt: Format, rows: Iterator[tuple[str, Record]], meta: dict[str, Any], name: str
) -> StreamingResponse:
    body = csv_lines(rows, meta) if fmt == "csv" else senml_chunks(rows)
    headers = {
        "Content-Disposition": f'attachment; filename="{name}.{"csv" if fmt == "csv" else "senml.json"}"',
        "Link": f'<{meta["licence_url"]}>; rel="license"',
        "X-Licence": str(meta["licence"]),
    }
    return StreamingResponse(body, media_type=_MEDIA[fmt], headers=headers)


@router.get(
    "/export/deployments/{deployment_id}/readings",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/senml+json": {}}}},
)
def export_deployment(
    deployment_id: int,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    _slot: ExportSlotDep,
    format: Format = "csv",
    start: Annotated[str | None, Query(description="default: end - 30 days")] = None,
    end: Annotated[str | None, Query(description="default: now")] = None,
    quantity: Annotated[str | None, Query(max_length=32)] = None,
    view: ViewQuery = "read",
) -> StreamingResponse:
    """Stream a deployment's readings as CSV (licence in ``#`` lines) or SenML JSON, with its
    derived quantities (``view=raw``: only the readings)."""
    row = session.get(DeploymentRow, deployment_id)
    if row is None or not _visible(principal, row):
        raise not_found(
            "deployment", deployment_id, "public deployments are at GET /api/v1/export/deployments.geojson"
        )
    s, e = _range(start, end, clock(), 30 * 86400.0)
    rows = _rows(session, store, settings, [row], s, e, quantity, view)
    return _stream(
        format,
        rows,
        _meta(settings, f"readings of deployment {row.name}", s, e),
        f"deployment-{deployment_id}",
    )


@router.get(
    "/export/use-cases/{use_case_id}/readings",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/senml+json": {}}}},
)
def export_use_case(
    use_case_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    _slot: ExportSlotDep,
    format: Format = "csv",
    start: Annotated[str | None, Query()] = None,
    end: Annotated[str | None, Query()] = None,
    quantity: Annotated[str | None, Query(max_length=32)] = None,
    view: ViewQuery = "read",
) -> StreamingResponse:
    """Stream the readings of every deployment of a use-case the caller may see (public ones for all)."""
    case = session.get(UseCaseRow, use_case_id)
    if case is None or (
        case.org_id is not None and not (principal.authenticated and principal.can(case.org_id))
    ):
        raise not_found("use-case", use_case_id)
    s, e = _range(start, end, clock(), 30 * 86400.0)
    deployments = [
        d
        for d in session.exec(
            select(DeploymentRow)
            .where(DeploymentRow.use_case_id == use_case_id)
            .order_by(col(DeploymentRow.id))
        ).all()
        if _visible(principal, d)
    ]
    rows = _rows(session, store, settings, deployments, s, e, quantity, view)
    return _stream(
        format, rows, _meta(settings, f"readings of use-case {use_case_id}", s, e), f"use-case-{use_case_id}"
    )


@router.get(
    "/export/deployments.geojson",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/geo+json": {}}}},
)
def export_geojson(
    session: SessionDep,
    settings: SettingsDep,
    use_case_id: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    """Stream every public deployment with a location as GeoJSON (private addresses blurred ~500 m)."""
    query = (
        select(DeploymentRow, OrganisationRow.slug)
        .join(OrganisationRow, col(OrganisationRow.id) == DeploymentRow.org_id)
        .where(
            col(DeploymentRow.public).is_(True),
            col(DeploymentRow.lat).is_not(None),
            col(DeploymentRow.lon).is_not(None),
        )
    )
    if use_case_id:
        query = query.where(DeploymentRow.use_case_id == use_case_id)

    found = session.exec(query.order_by(col(DeploymentRow.id))).all()

    def features() -> Iterator[dict[str, Any]]:
        for row, org in found:
            assert row.lat is not None and row.lon is not None
            lat, lon = blur(row.lat, row.lon, settings.blur_m) if row.private_address else (row.lat, row.lon)
            yield {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {
                    "id": row.id,
                    "name": row.name,
                    "organisation": org,
                    "use_case": row.use_case_id,
                    "environment": row.environment,
                    "starts_at": row.starts_at,
                    "ends_at": row.ends_at,
                    "address": "" if row.private_address else row.address,
                    "location_blurred_m": settings.blur_m if row.private_address else 0,
                },
            }

    meta = {
        "licence": settings.open_data_licence,
        "licence_url": settings.open_data_licence_url,
        "source": "IoT Suitcase",
    }
    return StreamingResponse(
        geojson_chunks(features(), meta),
        media_type="application/geo+json",
        headers={"Link": f'<{settings.open_data_licence_url}>; rel="license"'},
    )


_ = HTTPException
