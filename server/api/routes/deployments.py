"""Deployments: a kit (and, once claimed, its devices) at a place for a use-case; their readings.

Readings are resolved through the devices' deployment history at query time, so a device that
moved, or a backlog that arrived late, lands in the right deployment.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from server.api.auth import AuthDep, Principal, PrincipalDep, not_found
from server.api.common import Page, PagingDep, audit_change, page, resolve_org, scoped
from server.api.deps import ClockDep, SessionDep, StoreDep
from server.api.schemas import ReadingPublic, ViewQuery, invalid
from server.charts import Series, Statistic, downsample
from server.derived import derived_of
from server.export import iter_readings
from server.fleet import end_deployment, kit_org_ids
from server.geo import blur
from server.models import UseCaseRow
from server.spans import DeviceSpan, device_spans
from server.tables import DeploymentRow, KitRow
from server.timeutil import parse_time

__all__ = [
    "ChartPublic",
    "ChartSeries",
    "DeploymentCreate",
    "DeploymentPublic",
    "DeploymentUpdate",
    "DeviceSpan",
    "chart_body",
    "device_spans",
    "get_deployment",
    "router",
]

router = APIRouter(tags=["deployments"])

Environment = Literal["indoor", "outdoor"]
Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]
Epoch = Annotated[float, Field(ge=0, le=1e10)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentCreate(_Body):
    org_id: int | None = None
    kit_id: int | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    use_case_id: Annotated[str, Field(max_length=64)] | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    address: Annotated[str, Field(max_length=500)] = ""
    private_address: bool = Field(default=False, description="a home: public pages show it blurred (~500 m)")
    environment: Environment = "indoor"
    height_m: Annotated[float, Field(ge=-100, le=1000)] | None = None
    photo_url: Annotated[str, Field(max_length=2000)] = ""
    starts_at: Epoch | None = None
    ends_at: Epoch | None = None
    public: bool = False
    notes: Annotated[str, Field(max_length=5000)] = ""


class DeploymentUpdate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    use_case_id: Annotated[str, Field(max_length=64)] | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    address: Annotated[str, Field(max_length=500)] | None = None
    private_address: bool | None = None
    environment: Environment | None = None
    height_m: Annotated[float, Field(ge=-100, le=1000)] | None = None
    photo_url: Annotated[str, Field(max_length=2000)] | None = None
    ends_at: Epoch | None = None
    public: bool | None = None
    notes: Annotated[str, Field(max_length=5000)] | None = None


class DeploymentPublic(BaseModel):
    id: int
    org_id: int
    kit_id: int | None
    name: str
    use_case_id: str | None
    lat: float | None
    lon: float | None
    address: str
    private_address: bool
    environment: str
    height_m: float | None
    photo_url: str
    starts_at: float
    ends_at: float | None
    active: bool
    public: bool
    notes: str
    created_at: float
    devices: list[str]


class DeploymentReadings(BaseModel):
    deployment_id: int
    start: float
    end: float
    count: int
    truncated: bool
    readings: list[dict[str, object]]


class ChartSeries(BaseModel):
    device: str
    sensor: str
    quantity: str
    unit: str | None
    times: list[float]
    values: list[float]


class ChartPublic(BaseModel):
    """Series downsampled to at most ``points`` points each."""

    deployment_id: int
    start: float
    end: float
    points: int
    mode: str
    series: list[ChartSeries]


def get_deployment(
    session: Session, principal: Principal, deployment_id: int, role: str = "viewer"
) -> DeploymentRow:
    """Return a deployment the caller may use with ``role`` (kiosk tokens: their deployments only)."""
    row = session.get(DeploymentRow, deployment_id)
    if row is None:
        raise not_found("deployment", deployment_id)
    if principal.kiosk_deployments is not None and deployment_id not in principal.kiosk_deployments:
        raise not_found("deployment", deployment_id)
    if role == "viewer":
        principal.require_reader(row.org_id, "deployment", deployment_id)
    else:
        principal.require(row.org_id, role, "deployment", deployment_id)
    return row


def public_of(session: Session, row: DeploymentRow, now: float) -> DeploymentPublic:
    assert row.id is not None
    devices = sorted({s.device for s in device_spans(session, row.id)})
    data = row.model_dump()
    data["active"] = row.starts_at <= now and (row.ends_at is None or row.ends_at > now)
    return DeploymentPublic(**data, devices=devices)


def _check_use_case(session: Session, use_case_id: str | None, org_id: int) -> None:
    if use_case_id is None:
        return
    case = session.get(UseCaseRow, use_case_id)
    if case is None or (case.org_id is not None and case.org_id != org_id):
        raise invalid(
            "use_case_id",
            f"use-case {use_case_id!r} is unknown: see GET /api/v1/use-cases",
            use_case_id,
            where="body",
        )


@router.post("/deployments", status_code=201)
def create_deployment(
    body: DeploymentCreate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> DeploymentPublic:
    """Place a kit somewhere for a use-case; devices join when their Pis are claimed."""
    org = resolve_org(session, principal, body.org_id, "operator")
    assert org.id is not None
    now = clock()
    kit = None
    if body.kit_id is not None:
        kit = session.get(KitRow, body.kit_id)
        if kit is None or org.id not in kit_org_ids(session, kit):
            raise not_found("kit", body.kit_id, "a deployment uses a kit your organisation owns or borrows")
    _check_use_case(session, body.use_case_id, org.id)
    starts = body.starts_at if body.starts_at is not None else now
    if body.ends_at is not None and body.ends_at <= starts:
        raise invalid("ends_at", "ends_at must be after starts_at", body.ends_at, where="body")
    data = body.model_dump(exclude={"org_id", "starts_at"})
    row = DeploymentRow(**data, org_id=org.id, starts_at=starts, created_at=now)
    session.add(row)
    if kit is not None and kit.status in ("in_stock", "on_loan"):
        kit.status = "deployed"
        session.add(kit)
    session.flush()
    audit_change(session, principal, now, "create", "deployment", row.id, org.id, name=row.name)
    session.commit()
    return public_of(session, row, now)


@router.get("/deployments")
def list_deployments(
    principal: AuthDep,
    session: SessionDep,
    paging: PagingDep,
    clock: ClockDep,
    org_id: int | None = None,
    kit_id: int | None = None,
    use_case_id: Annotated[str | None, Query(max_length=64)] = None,
    active: bool | None = None,
    public: bool | None = None,
) -> Page[DeploymentPublic]:
    """Return the deployments of the caller's organisations, filtered."""
    now = clock()
    query = scoped(select(DeploymentRow), DeploymentRow.org_id, principal)
    if principal.kiosk_deployments is not None:
        query = query.where(col(DeploymentRow.id).in_(sorted(principal.kiosk_deployments)))
    for column, value in (
        (DeploymentRow.org_id, org_id),
        (DeploymentRow.kit_id, kit_id),
        (DeploymentRow.use_case_id, use_case_id),
        (DeploymentRow.public, public),
    ):
        if value is not None:
            query = query.where(column == value)
    if active is not None:
        running = (col(DeploymentRow.starts_at) <= now) & (
            col(DeploymentRow.ends_at).is_(None) | (col(DeploymentRow.ends_at) > now)
        )
        query = query.where(running if active else ~running)
    rows, total = page(session, query, paging, col(DeploymentRow.id))
    return Page(data=[public_of(session, r, now) for r in rows], count=total, **paging.model_dump())


@router.get("/deployments/{deployment_id}")
def read_deployment(
    deployment_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> DeploymentPublic:
    """Return one deployment with its devices."""
    return public_of(session, get_deployment(session, principal, deployment_id), clock())


@router.patch("/deployments/{deployment_id}")
def update_deployment(
    deployment_id: int, body: DeploymentUpdate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> DeploymentPublic:
    """Change a deployment (operators)."""
    row = get_deployment(session, principal, deployment_id, "operator")
    changes = body.model_dump(exclude_unset=True)
    if "use_case_id" in changes:
        _check_use_case(session, body.use_case_id, row.org_id)
    for key, value in changes.items():
        if value is None and key not in ("use_case_id", "lat", "lon", "height_m", "ends_at"):
            continue
        setattr(row, key, value)
    if row.ends_at is not None and row.ends_at <= row.starts_at:
        raise invalid("ends_at", "ends_at must be after starts_at", row.ends_at, where="body")
    session.add(row)
    now = clock()
    audit_change(session, principal, now, "update", "deployment", deployment_id, row.org_id, **changes)
    session.commit()
    return public_of(session, row, now)


@router.post("/deployments/{deployment_id}/end")
def end(deployment_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep) -> DeploymentPublic:
    """End a deployment now: its devices leave it (their later readings are not its)."""
    row = get_deployment(session, principal, deployment_id, "operator")
    now = clock()
    end_deployment(session, row, now)
    audit_change(session, principal, now, "end", "deployment", deployment_id, row.org_id)
    session.commit()
    return public_of(session, row, now)


def _range(start: str | None, end_: str | None, now: float, default_span: float) -> tuple[float, float]:
    def parse(name: str, text: str | None) -> float | None:
        if text is None:
            return None
        try:
            return parse_time(text)
        except ValueError as exc:
            raise invalid(name, str(exc), text) from None

    s, e = parse("start", start), parse("end", end_)
    e = e if e is not None else now
    s = s if s is not None else e - default_span
    if e <= s:
        raise invalid("end", "end must be after start", end_)
    return s, e


@router.get("/deployments/{deployment_id}/readings")
def deployment_readings(
    deployment_id: int,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    clock: ClockDep,
    start: Annotated[str | None, Query(description="ISO 8601 or epoch seconds; default: end - 1 h")] = None,
    end: Annotated[str | None, Query(description="ISO 8601 or epoch seconds; default: now")] = None,
    quantity: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    view: ViewQuery = "read",
) -> DeploymentReadings:
    """Return the readings of the devices while they were in the deployment, oldest first per device,
    with the deployment's derived quantities (``view=raw``: without)."""
    row = get_deployment(session, principal, deployment_id)
    s, e = _range(start, end, clock(), 3600.0)
    out: list[dict[str, object]] = []
    spans = device_spans(session, deployment_id)
    reader = derived_of(session, row, spans).reader(store, spans) if view == "read" else store
    for org, device, span_from, span_to in spans:
        for record in iter_readings(
            reader, org, device, max(s, span_from), min(e, span_to), quantity=quantity
        ):
            out.append({"device": device, **ReadingPublic.of(record).model_dump()})
            if len(out) >= limit:
                break
        if len(out) >= limit:
            break
    assert row.id is not None
    return DeploymentReadings(
        deployment_id=row.id, start=s, end=e, count=len(out), truncated=len(out) >= limit, readings=out
    )


@router.get("/deployments/{deployment_id}/chart", response_model=ChartPublic)
def deployment_chart(
    deployment_id: int,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    clock: ClockDep,
    start: Annotated[str | None, Query(description="default: end - 7 days")] = None,
    end: Annotated[str | None, Query(description="default: now")] = None,
    quantity: Annotated[str | None, Query(max_length=32)] = None,
    points: Annotated[int, Query(ge=10, le=5000)] = 1000,
    mode: Annotated[
        Literal["mean", "min", "max", "sample"],
        Query(description="each window's mean, min or max; 'sample' is the old name of 'mean'"),
    ] = "mean",
) -> Response:
    """Return each series of the deployment downsampled to at most ``points`` windows (their mean,
    min or max).

    The body is :class:`ChartPublic`, serialised here by pydantic's own JSON encoder: returned
    as the model, FastAPI would validate its thousands of floats again and encode them through
    Python dicts and ``json``, ~5 ms of a 30-day chart's ~30 ms (10 series of 720 points).
    """
    row = get_deployment(session, principal, deployment_id)
    s, e = _range(start, end, clock(), 7 * 86400.0)
    statistic: Statistic = "mean" if mode == "sample" else mode
    spans = device_spans(session, deployment_id)
    series = downsample(
        derived_of(session, row, spans).reader(store, spans),
        spans,
        s,
        e,
        points=points,
        quantity=quantity,
        statistic=statistic,
    )
    body = chart_body(deployment_id, s, e, points, statistic, series)
    return Response(body, media_type="application/json")


def chart_body(
    deployment_id: int, start: float, end: float, points: int, mode: str, series: list[Series]
) -> bytes:
    """The JSON of :class:`ChartPublic` for ``series``, built without validation.

    ``model_construct``: every value is the server's own (floats from the store's columns), and
    validating a 30-day chart's 14,400 of them cost ~1-2 ms. pydantic's serialiser still follows
    the schema, so the bytes are a validated model's (tests/server/test_chart_columns.py).
    """
    from kits.quantities import spec

    chart = ChartPublic.model_construct(
        deployment_id=deployment_id,
        start=float(start),
        end=float(end),
        points=points,
        mode=mode,
        series=[
            ChartSeries.model_construct(
                device=x.device,
                sensor=x.sensor,
                quantity=x.quantity,
                unit=found.unit if (found := spec(x.quantity)) is not None else None,
                times=x.times,
                values=x.values,
            )
            for x in series
        ],
    )
    return chart.model_dump_json().encode()


_ = blur
