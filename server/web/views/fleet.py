"""``GET /fleet``: every device of the organisations the user may see, with its health.

Online/offline, last seen, outbox backlog, per-sensor health, calibration due, kit and loan, the
agent version (and whether the device takes updates); filters, sorting and pages of 50; counts at
the top, the agent versions and the newest rollout's progress over the devices shown. ``GET
/fleet/live`` returns the counts and the table alone (same filters and page), which
``static/fleet.js`` polls to update the page in place. Counts and filters come from the index
(``fleet_index``); only the page's 50 devices are read in full and rendered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from gateway.store import Reader
from server.api.auth import Principal, PrincipalDep
from server.api.deps import ClockDep, ResourcesDep, SessionDep, SettingsDep, StoreDep
from server.resources import Resources
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
from server.web.views.fleet_index import CALIBRATION_SOON_S, Entry, fleet_index, matching

__all__ = ["CALIBRATION_SOON_S", "PAGE_SIZE", "FleetRow", "fleet_rows", "router", "warm_index"]

router = APIRouter()

POLL_MS = 5000
PAGE_SIZE = 50


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
    connected: bool = False  # its agent says it is connected (with ``online`` False: no readings)
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
    session: Session, orgs: dict[int, OrganisationRow], entries: list[Entry], now: float
) -> list[FleetRow]:
    """Return the page's devices (``entries``, a page of the index) as the page shows them.

    Their kit, loan, deployment, config version and diagnostics are read for these devices only.
    """
    slugs = {org.slug: org for org in orgs.values()}
    ids = [e.device for e in entries if e.registered]
    # The columns the rows show, not ORM objects of every column (three more JSON texts each).
    devices = (
        {
            d.id: d
            for d in session.connection().execute(
                sqlalchemy.select(
                    col(DeviceRow.id),
                    col(DeviceRow.sensors),
                    col(DeviceRow.missing),
                    col(DeviceRow.config_version),
                    col(DeviceRow.diagnostics),
                    col(DeviceRow.updates_opt_out),
                ).where(col(DeviceRow.id).in_(ids))
            )
        }
        if ids
        else {}
    )
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
    kit_ids = {e.kit_id for e in entries if e.kit_id is not None}
    kits: dict[int | None, str] = (
        dict(
            session.connection()
            .execute(
                sqlalchemy.select(col(KitRow.id), col(KitRow.inventory_code)).where(
                    col(KitRow.id).in_(kit_ids)
                )
            )
            .all()
        )
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
    borrowers = (
        {
            o.id: o
            for o in session.exec(
                select(OrganisationRow).where(
                    col(OrganisationRow.id).in_({loan.org_id for loan in loans.values()})
                )
            ).all()
        }
        if loans
        else {}
    )
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
    for entry in entries:
        org = slugs[entry.org]
        row = FleetRow(
            device=entry.device,
            org=org.slug,
            org_name=org.name,
            registered=entry.registered,
            online=entry.online,
            last_seen=entry.last_seen,
            backlog=entry.backlog,
            connected=entry.connected,
            healthy=entry.healthy,
            calibration=entry.calibration,
            calibration_due_at=entry.calibration_due_at,
            agent_version=entry.agent_version,
        )
        dev = devices.get(entry.device)
        if dev is not None:
            row.sensors, row.missing = list(dev.sensors), list(dev.missing)
            row.config_version, row.config_newest = dev.config_version, newest.get(dev.id)
            row.diagnostics = diagnostics_view(dev.diagnostics or {}) if dev.diagnostics else {}
            row.updates_opt_out = dev.updates_opt_out or org.updates_opt_out
        if entry.device in current:
            row.deployment_id, row.deployment = current[entry.device]
        if entry.kit_id is not None and entry.kit_id in kits:
            row.kit, row.kit_id = kits[entry.kit_id], entry.kit_id
            loan = loans.get(entry.kit_id)
            if loan is not None:
                borrower = borrowers.get(loan.org_id)
                row.loan = f"{borrower.name if borrower else loan.org_id} ({loan.borrower})"
                row.loan_due_at, row.loan_overdue = loan.due_at, loan.due_at < now
        rows.append(row)
    return rows


SORTS = ("", "last_seen", "-last_seen")


@dataclass
class Filters:
    org: str = ""
    state: str = ""
    problem: str = ""
    q: str = ""
    sort: str = ""
    page: int = 1
    size: int = PAGE_SIZE

    def view_key(self) -> tuple[str, str, str, str]:
        """What picks and orders the entries (before the search and the page)."""
        return (self.org, self.state, self.problem, self.sort)

    def keep(self, entry: Entry) -> bool:
        if self.org and entry.org != self.org:
            return False
        if self.state == "online" and not entry.online:
            return False
        if self.state == "offline" and entry.online:
            return False
        if self.problem == "unhealthy" and entry.healthy is not False:
            return False
        if self.problem == "calibration" and entry.calibration not in ("due", "soon"):
            return False
        if self.problem == "silent" and not (entry.connected and not entry.online):
            return False
        return not (self.problem == "backlog" and not entry.backlog)

    def order(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` (ordered by organisation and device) in the chosen order; stable."""
        if self.sort == "last_seen":  # the longest silent first; never seen before them
            return sorted(entries, key=lambda e: -1.0 if e.last_seen is None else e.last_seen)
        if self.sort == "-last_seen":
            return sorted(entries, key=lambda e: -1.0 if e.last_seen is None else e.last_seen, reverse=True)
        return entries

    def query(self, **change: Any) -> str:
        """The filters as a query string (``change`` replaces some, e.g. ``page=2``)."""
        from urllib.parse import urlencode

        values = {**vars(self), **change}
        defaults = {"page": 1, "size": PAGE_SIZE}
        return urlencode({k: v for k, v in values.items() if v and defaults.get(k) != v})


@dataclass(frozen=True)
class _Index:
    """Every visible device (``fleet_index``) and what the page derives from all of them; reused
    as a whole for ``fleet_cache_s``, never changed."""

    as_of: float  # the domain time it was read
    entries: list[Entry]
    counts: dict[str, int]
    versions: list[tuple[str, int]]
    present: frozenset[str]  # organisations with devices
    registered: frozenset[str]
    # Filters.view_key() -> the entries it keeps, in its order: each filter and sort walks the
    # 10,000 entries once per index, not once per page (a page is then a slice).
    views: dict[tuple[str, str, str, str], list[Entry]] = field(default_factory=dict)

    def view(self, filters: Filters) -> list[Entry]:
        """The entries ``filters`` keeps, in its order (the search ``q`` aside); never changed."""
        key = filters.view_key()
        found = self.views.get(key)
        if found is None:
            if len(self.views) >= 64:  # every combination of the page's choices is fewer
                self.views.clear()
            kept = self.entries if key[:3] == ("", "", "") else [e for e in self.entries if filters.keep(e)]
            found = self.views[key] = filters.order(kept)
        return found

    @classmethod
    def of(cls, every: list[Entry], now: float) -> _Index:
        versions = Counter(e.agent_version or "?" for e in every if e.registered)
        return cls(
            as_of=now,
            entries=every,
            counts={
                "total": len(every),
                "online": sum(e.online for e in every),
                "offline": sum(not e.online for e in every),
                "unhealthy": sum(e.healthy is False for e in every),
                "calibration": sum(e.calibration in ("due", "soon") for e in every),
                "backlog": sum(bool(e.backlog) for e in every),
                "silent": sum(e.connected and not e.online for e in every),
            },
            versions=sorted(versions.items(), key=lambda kv: kv[0], reverse=True),
            present=frozenset(e.org for e in every),
            registered=frozenset(e.device for e in every if e.registered),
        )


def _context(
    request: Request,
    session: Session,
    store: Reader,
    settings: ServerSettings,
    principal: Principal,
    now: float,
    filters: Filters,
    resources: Resources,
) -> dict[str, Any]:
    t = Translator(pick_language(request))
    orgs = _visible_orgs(session, principal)
    slugs = {i: o.slug for i, o in orgs.items()}
    cache = resources.fleet_index
    # Reused for a few seconds (fleet_cache_s): at 10,000 devices the index is most of the page;
    # past that, shown while the next one is read (fleet_cache_stale_s). Kept with the time it was
    # read, so the page says how old its counts are.
    index: _Index = cache.get(
        _index_key(slugs, settings),
        lambda: _build(session, store, slugs, settings, now),
        _refresher(resources, store, slugs),
    )
    shown = index.view(filters)
    if filters.q.strip():
        found = matching(session, shown, filters.q, _org_names(session))
        shown = [e for e in shown if e.device in found]
    pages = max(1, -(-len(shown) // filters.size))
    filters.page = min(max(1, filters.page), pages)
    first = (filters.page - 1) * filters.size
    page = shown[first : first + filters.size]
    view = []
    for r in fleet_rows(session, orgs, page, now):
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
    counts = index.counts
    zone = org_zone(settings, min(slugs.values(), default=""))
    return {
        "versions": index.versions,
        "rollout": _rollout_view(session, index.registered),
        "fleet_admin": principal.global_admin,
        "rows": view,
        "counts": counts,
        "orgs": sorted((o.slug, o.name) for o in orgs.values() if o.slug in index.present),
        "filters": filters,
        "shown": len(shown),
        "pager": {
            "page": filters.page,
            "pages": pages,
            "first": first + 1 if page else 0,
            "last": first + len(page),
            "prev": f"/fleet?{filters.query(page=filters.page - 1)}" if filters.page > 1 else None,
            "next": f"/fleet?{filters.query(page=filters.page + 1)}" if filters.page < pages else None,
        },
        "stale_after_s": settings.stale_after_s,
        "now": now,
        # Counts of a reused index are as old as it: say so (in the first organisation's zone).
        "counts_as_of": "" if cache.ttl_s <= 0 else local_time(index.as_of, zone, date=False),
    }


def _index_key(slugs: dict[int, str], settings: ServerSettings) -> tuple[object, ...]:
    """The index's key: the organisations it holds, and when a device counts as offline."""
    return (tuple(sorted(slugs.items())), settings.stale_after_s)


def _build(
    session: Session, store: Reader, slugs: dict[int, str], settings: ServerSettings, now: float
) -> _Index:
    return _Index.of(fleet_index(session, store, slugs, settings.stale_after_s, now), now)


def _refresher(resources: Resources, store: Reader, slugs: dict[int, str]) -> Callable[[], _Index]:
    """Read the index of ``slugs`` in the cache's worker, with a session of its own."""

    def refresh() -> _Index:
        with Session(resources.engine) as own:
            return _build(own, store, slugs, resources.settings, resources.clock())

    return refresh


def warm_index(resources: Resources) -> None:
    """Read, in the background, the index of every organisation together (what a global admin
    sees) and of each organisation alone (what its members see), as at most the cache holds.

    Pages that ask for one meanwhile wait for that read rather than reading it again.
    """
    with Session(resources.engine) as session:
        slugs = {o.id: o.slug for o in session.exec(select(OrganisationRow)).all() if o.id is not None}
    sets = [slugs, *({org: slug} for org, slug in sorted(slugs.items()))]
    keys: set[tuple[object, ...]] = set()
    for one in sets[: resources.fleet_index.max_entries]:
        key = _index_key(one, resources.settings)
        if key not in keys:  # one organisation: its own index is every organisation's
            keys.add(key)
            resources.fleet_index.warm(key, _refresher(resources, resources.store, one))


def _org_names(session: Session) -> dict[int, str]:
    """Every organisation's name (a loan's borrower may be one the viewer does not see)."""
    return {o.id: o.name for o in session.exec(select(OrganisationRow)).all() if o.id is not None}


def _rollout_view(session: Session, devices: frozenset[str]) -> dict[str, Any] | None:
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


def _filters(
    org: str, state: str, problem: str, q: str, sort: str = "", page: int = 1, size: int = PAGE_SIZE
) -> Filters:
    return Filters(
        org=org,
        state=state if state in ("online", "offline") else "",
        problem=problem if problem in ("unhealthy", "silent", "calibration", "backlog") else "",
        q=q[:100],
        sort=sort if sort in SORTS else "",
        page=page,
        size=size,
    )


Text = Annotated[str, Query(max_length=100)]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000, description="which page, from 1")]
PageSize = Annotated[int, Query(ge=1, le=200, description="devices per page")]


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    clock: ClockDep,
    resources: ResourcesDep,
    org: Text = "",
    state: Text = "",
    problem: Text = "",
    q: Text = "",
    sort: Text = "",
    page: PageNumber = 1,
    size: PageSize = PAGE_SIZE,
    poll_ms: Annotated[int, Query(ge=100, le=600_000)] = POLL_MS,
) -> Response:
    """Render the fleet overview (logged-in users)."""
    if principal.kind != "user":
        return login_redirect(request)
    filters = _filters(org, state, problem, q, sort, page, size)
    context = _context(request, session, store, settings, principal, clock(), filters, resources)
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
    resources: ResourcesDep,
    org: Text = "",
    state: Text = "",
    problem: Text = "",
    q: Text = "",
    sort: Text = "",
    page: PageNumber = 1,
    size: PageSize = PAGE_SIZE,
) -> Response:
    """Return the counts and the table of the fleet page (polled by ``static/fleet.js``)."""
    if principal.kind != "user":
        return Response(status_code=401)
    context = _context(
        request,
        session,
        store,
        settings,
        principal,
        clock(),
        _filters(org, state, problem, q, sort, page, size),
        resources,
    )
    return render(request, "_fleet_live.html", context, principal=principal)
