"""``GET /fleet``: every device of the organisations the user may see, with its health.

Online/offline, last seen, outbox backlog, per-sensor health, calibration due, kit and loan, the
agent version (and whether the device takes updates); filters; counts at the top, the agent
versions and the newest rollout's progress over the devices shown. ``GET /fleet/live`` returns
the counts and the table alone (same filters), which ``static/fleet.js`` polls to update the page
in place.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from gateway.store import Reader
from server.api.auth import Principal, PrincipalDep
from server.api.deps import ClockDep, SessionDep, SettingsDep, StoreDep
from server.fleet import current_calibrations
from server.settings import ServerSettings
from server.tables import (
    AgentReleaseRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceConfigRow,
    DeviceRow,
    KitRow,
    LoanRow,
    OrganisationRow,
    RolloutRow,
)
from server.web.i18n import Translator, pick_language
from server.web.render import ago, local_time, login_redirect, org_zone, render
from server.web.views.device import diagnostics_view

__all__ = ["CALIBRATION_SOON_S", "FleetRow", "fleet_rows", "router"]

router = APIRouter()

CALIBRATION_SOON_S = 30 * 86400.0
POLL_MS = 5000


@dataclass
class FleetRow:
    """One device as the fleet page shows it."""

    device: str
    org: str
    org_name: str
    registered: bool
    online: bool
    last_seen: float | None
    backlog: int | None
    sensors: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    healthy: bool | None = None
    calibration: str = "none"  # none | ok | soon | due
    calibration_due_at: float | None = None
    kit: str | None = None
    kit_id: int | None = None
    loan: str | None = None
    loan_due_at: float | None = None
    loan_overdue: bool = False
    deployment: str | None = None
    deployment_id: int | None = None
    agent_version: str | None = None
    config_version: int | None = None  # in force on the device (its meta or reply)
    config_newest: int | None = None  # the newest version on the server
    diagnostics: dict[str, str] = field(default_factory=dict)
    updates_opt_out: bool = False


def _visible_orgs(session: Session, principal: Principal) -> dict[int, OrganisationRow]:
    orgs = principal.org_ids()
    query = select(OrganisationRow)
    if orgs is not None:
        query = query.where(col(OrganisationRow.id).in_(sorted(orgs)))
    return {row.id: row for row in session.exec(query).all() if row.id is not None}


def fleet_rows(
    session: Session, store: Reader, settings: ServerSettings, principal: Principal, now: float
) -> list[FleetRow]:
    """Return every device of the organisations ``principal`` may see (none of any other)."""
    orgs = _visible_orgs(session, principal)
    if not orgs:
        return []
    slugs = {org.slug: org for org in orgs.values()}
    seen = {s.device: s for s in store.devices()}
    devices = session.exec(
        select(DeviceRow).where(col(DeviceRow.org_id).in_(list(orgs)), col(DeviceRow.revoked_at).is_(None))
    ).all()
    ids = [d.id for d in devices]
    links = (
        session.exec(
            select(DeploymentDeviceRow.device_id, DeploymentRow.id, DeploymentRow.name)
            .join(DeploymentRow, col(DeploymentRow.id) == DeploymentDeviceRow.deployment_id)
            .where(col(DeploymentDeviceRow.device_id).in_(ids), col(DeploymentDeviceRow.to_t).is_(None))
        ).all()
        if ids
        else []
    )
    current = {device: (dep_id, name) for device, dep_id, name in links}
    kit_ids = {d.kit_id for d in devices if d.kit_id is not None}
    kits = (
        {k.id: k for k in session.exec(select(KitRow).where(col(KitRow.id).in_(kit_ids))).all()}
        if kit_ids
        else {}
    )
    loans = (
        {
            loan.kit_id: loan
            for loan in session.exec(
                select(LoanRow).where(col(LoanRow.kit_id).in_(kit_ids), col(LoanRow.returned_at).is_(None))
            ).all()
        }
        if kit_ids
        else {}
    )
    borrower_orgs = {o.id: o for o in session.exec(select(OrganisationRow)).all()} if loans else {}
    calibrations: dict[int, list[Any]] = {k: current_calibrations(session, k) for k in kit_ids}
    newest: dict[str, int] = (
        dict(
            session.exec(
                select(DeviceConfigRow.device_id, func.max(DeviceConfigRow.version))
                .where(col(DeviceConfigRow.device_id).in_(ids))
                .group_by(col(DeviceConfigRow.device_id))
            ).all()
        )
        if ids
        else {}
    )

    rows: list[FleetRow] = []
    for dev in devices:
        org = orgs[dev.org_id]
        store_seen = seen.get(dev.id)
        times = [t for t in (dev.last_seen, store_seen.last_seen if store_seen else None) if t is not None]
        last = max(times) if times else None
        fresh = last is not None and now - last <= settings.stale_after_s
        # A retained "offline" newer than the last reading wins over fresh data.
        said_offline = (
            dev.status_since is not None and not dev.online and last is not None and dev.status_since >= last
        )
        online = fresh and not said_offline
        states = [s.get("state") for s in dev.sensors]
        row = FleetRow(
            device=dev.id,
            org=org.slug,
            org_name=org.name,
            registered=True,
            online=online,
            last_seen=last,
            backlog=dev.backlog,
            sensors=list(dev.sensors),
            missing=list(dev.missing),
            healthy=(all(s == "ok" for s in states) and not dev.missing) if dev.meta_at is not None else None,
            agent_version=dev.agent_version,
            config_version=dev.config_version,
            config_newest=newest.get(dev.id),
            diagnostics=diagnostics_view(dev.diagnostics or {}) if dev.diagnostics else {},
            updates_opt_out=dev.updates_opt_out or org.updates_opt_out,
        )
        if dev.id in current:
            row.deployment_id, row.deployment = current[dev.id]
        if dev.kit_id is not None and dev.kit_id in kits:
            kit = kits[dev.kit_id]
            row.kit, row.kit_id = kit.inventory_code, kit.id
            loan = loans.get(dev.kit_id)
            if loan is not None:
                borrower = borrower_orgs.get(loan.org_id)
                row.loan = f"{borrower.name if borrower else loan.org_id} ({loan.borrower})"
                row.loan_due_at, row.loan_overdue = loan.due_at, loan.due_at < now
            dues = [
                c.due_at
                for c in calibrations.get(dev.kit_id, [])
                if c.due_at is not None and (dev.pi_index is None or c.pi_index == dev.pi_index)
            ]
            if dues:
                first = min(dues)
                row.calibration_due_at = first
                row.calibration = (
                    "due" if first <= now else "soon" if first <= now + CALIBRATION_SOON_S else "ok"
                )
        rows.append(row)
    known = set(ids) | set(
        session.exec(select(DeviceRow.id).where(col(DeviceRow.id).in_(list(seen)))).all() if seen else []
    )
    for entry in seen.values():
        if entry.device in known or entry.org not in slugs:
            continue
        org = slugs[entry.org]
        rows.append(
            FleetRow(
                device=entry.device,
                org=org.slug,
                org_name=org.name,
                registered=False,
                online=now - entry.last_seen <= settings.stale_after_s,
                last_seen=entry.last_seen,
                backlog=None,
            )
        )
    rows.sort(key=lambda r: (r.org, r.device))
    return rows


@dataclass
class Filters:
    org: str = ""
    state: str = ""
    problem: str = ""
    q: str = ""

    def keep(self, row: FleetRow) -> bool:
        if self.org and row.org != self.org:
            return False
        if self.state == "online" and not row.online:
            return False
        if self.state == "offline" and row.online:
            return False
        if self.problem == "unhealthy" and row.healthy is not False:
            return False
        if self.problem == "calibration" and row.calibration not in ("due", "soon"):
            return False
        if self.problem == "backlog" and not row.backlog:
            return False
        needle = self.q.strip().lower()
        return not needle or any(
            needle in (x or "").lower() for x in (row.device, row.deployment, row.kit, row.loan)
        )

    def query(self) -> str:
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in vars(self).items() if v})


def _context(
    request: Request,
    session: Session,
    store: Reader,
    settings: ServerSettings,
    principal: Principal,
    now: float,
    filters: Filters,
) -> dict[str, Any]:
    t = Translator(pick_language(request))
    every = fleet_rows(session, store, settings, principal, now)
    shown = [r for r in every if filters.keep(r)]
    counts = {
        "total": len(every),
        "online": sum(r.online for r in every),
        "offline": sum(not r.online for r in every),
        "unhealthy": sum(r.healthy is False for r in every),
        "calibration": sum(r.calibration in ("due", "soon") for r in every),
        "backlog": sum(bool(r.backlog) for r in every),
    }
    view = []
    for r in shown:
        tz = org_zone(settings, r.org)
        view.append(
            {
                "row": r,
                "last_seen": local_time(r.last_seen, tz),
                "ago": ago(None if r.last_seen is None else now - r.last_seen, t),
                "calibration_due": local_time(r.calibration_due_at, tz).split(" ")[0]
                if r.calibration_due_at
                else "",
                "loan_due": local_time(r.loan_due_at, tz).split(" ")[0] if r.loan_due_at else "",
            }
        )
    orgs = sorted({(r.org, r.org_name) for r in every})
    versions = Counter(r.agent_version or "?" for r in every if r.registered)
    return {
        "versions": sorted(versions.items(), key=lambda kv: kv[0], reverse=True),
        "rollout": _rollout_view(session, {r.device for r in every if r.registered}),
        "fleet_admin": principal.global_admin,
        "rows": view,
        "counts": counts,
        "orgs": orgs,
        "filters": filters,
        "shown": len(shown),
        "stale_after_s": settings.stale_after_s,
        "now": now,
    }


def _rollout_view(session: Session, devices: set[str]) -> dict[str, Any] | None:
    """The newest rollout's progress over the devices the viewer sees (None: none touches them)."""
    from server.rollouts import RING_NAMES, progress

    for rollout in session.exec(select(RolloutRow).order_by(col(RolloutRow.id).desc()).limit(1)).all():
        p = progress(session, rollout, devices)
        if not p.targets:
            return None
        return {
            "id": rollout.id,
            "version": p.version,
            "state": rollout.state,
            "ring": RING_NAMES[rollout.ring],
            "reason": rollout.reason,
            "rings": [
                (name, counts.get("updated", 0), sum(counts.values()), counts.get("failed", 0))
                for name, counts in zip(RING_NAMES, p.rings, strict=True)
            ],
            "opted_out": p.opted_out,
        }
    return None


def _filters(org: str, state: str, problem: str, q: str) -> Filters:
    return Filters(
        org=org,
        state=state if state in ("online", "offline") else "",
        problem=problem if problem in ("unhealthy", "calibration", "backlog") else "",
        q=q[:100],
    )


Text = Annotated[str, Query(max_length=100)]


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    org: Text = "",
    state: Text = "",
    problem: Text = "",
    q: Text = "",
    poll_ms: Annotated[int, Query(ge=100, le=600_000)] = POLL_MS,
) -> Response:
    """Render the fleet overview (logged-in users)."""
    if principal.kind != "user":
        return login_redirect(request)
    filters = _filters(org, state, problem, q)
    context = _context(request, session, store, settings, principal, clock(), filters)
    context["config"] = {"live": f"/fleet/live?{filters.query()}", "poll_ms": poll_ms}
    if principal.global_admin:  # they start agent rollouts from here
        context["releases"] = [
            r.version for r in session.exec(select(AgentReleaseRow).order_by(col(AgentReleaseRow.id).desc()))
        ]
    return render(request, "fleet.html", context, principal=principal, section="fleet")


@router.get("/fleet/live", response_class=HTMLResponse)
def fleet_live(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    org: Text = "",
    state: Text = "",
    problem: Text = "",
    q: Text = "",
) -> Response:
    """Return the counts and the table of the fleet page (polled by ``static/fleet.js``)."""
    if principal.kind != "user":
        return Response(status_code=401)
    context = _context(
        request, session, store, settings, principal, clock(), _filters(org, state, problem, q)
    )
    return render(request, "_fleet_live.html", context, principal=principal)
