"""The fleet page's index: every visible device as a few facts, read in a handful of queries.

Counts, filters and sorting need each device's state (online, healthy, backlog, calibration), so
the index reads every visible device, but only the columns that state needs (no ORM objects), the
store's last-seen times of all of them in one read, and every kit's calibrations in one query.
The page's own rows, with their kit, loan, deployment, config and diagnostics, are read for the
page's devices only (``server.web.views.fleet``). At 10,000 devices that is a handful of queries
instead of one per kit, and 50 rendered rows instead of 10,000.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from operator import attrgetter

import sqlalchemy
from sqlalchemy import func
from sqlmodel import Session, col, select

from gateway.store import DeviceSeen, Reader
from server.fleet import registered_among
from server.tables import CalibrationRow, DeploymentDeviceRow, DeploymentRow, DeviceRow, KitRow, LoanRow

__all__ = ["CALIBRATION_SOON_S", "Entry", "calibration_state", "fleet_index", "matching"]

CALIBRATION_SOON_S = 30 * 86400.0


@dataclass(slots=True)
class Entry:
    """One device as the index holds it: what counts, filters and sorting need, nothing more."""

    device: str
    org: str
    registered: bool
    online: bool
    last_seen: float | None
    healthy: bool | None = None
    backlog: int | None = None
    calibration: str = "none"  # none | ok | soon | due
    calibration_due_at: float | None = None
    kit_id: int | None = None
    agent_version: str | None = None
    # Its agent's retained status says it is connected: with ``online`` False, the Pi is up but no
    # reading arrives (a sensor, its wiring or the agent's reading loop, not the power or network).
    connected: bool = False


def calibration_state(due_at: float | None, now: float) -> str:
    """``due``, ``soon`` (within 30 days), ``ok``, or ``none`` (no due date)."""
    if due_at is None:
        return "none"
    return "due" if due_at <= now else "soon" if due_at <= now + CALIBRATION_SOON_S else "ok"


def _first_dues(session: Session, org_ids: Collection[int]) -> dict[tuple[int, int | None], float]:
    """The first due date of the newest calibrations per (kit, Pi), and per kit under ``None``."""
    kits = select(DeviceRow.kit_id).where(
        col(DeviceRow.org_id).in_(sorted(org_ids)), col(DeviceRow.kit_id).is_not(None)
    )
    newest: dict[tuple[int, int, str, str], float | None] = {}
    for kit_id, pi, sensor, quantity, due_at in (
        session.connection()
        .execute(
            sqlalchemy.select(
                col(CalibrationRow.kit_id),
                col(CalibrationRow.pi_index),
                col(CalibrationRow.sensor),
                col(CalibrationRow.quantity),
                col(CalibrationRow.due_at),
            )
            .where(col(CalibrationRow.kit_id).in_(kits))
            .order_by(col(CalibrationRow.version))
        )
        .all()
    ):
        newest[(kit_id, pi, sensor, quantity)] = due_at
    first: dict[tuple[int, int | None], float] = {}
    for (kit_id, pi, _, _), due_at in newest.items():
        if due_at is None:
            continue
        for key in ((kit_id, pi), (kit_id, None)):
            first[key] = min(first.get(key, due_at), due_at)
    return first


def _healthy(
    known: dict[tuple[str | None, str | None], bool], sensors: str | None, missing: str | None
) -> bool:
    """Every sensor ``ok`` and none missing, from the JSON texts of the registry (memoised in ``known``)."""
    key = (sensors, missing)
    if key not in known:
        states = [s.get("state") for s in json.loads(sensors or "[]") if isinstance(s, dict)]
        known[key] = all(state == "ok" for state in states) and not json.loads(missing or "[]")
    return known[key]


def _seen(store: Reader, slugs: Collection[str]) -> dict[str, DeviceSeen]:
    """The store's devices seen of the visible organisations: one read, whatever the fleet's size."""
    read = store.devices(next(iter(slugs))) if len(slugs) == 1 else store.devices()
    return {s.device: s for s in read if s.org in slugs}


def fleet_index(
    session: Session, store: Reader, orgs: dict[int, str], stale_after_s: float, now: float
) -> list[Entry]:
    """Every device of ``orgs`` (id -> slug): registered ones not revoked, then those only seen in
    the store; ordered by organisation and device."""
    if not orgs:
        return []
    seen = _seen(store, set(orgs.values()))
    dues = _first_dues(session, orgs)
    entries: list[Entry] = []
    registered: set[str] = set()
    # Plain columns on the connection, not ORM rows: 10,000 rows are read as tuples, and the
    # sensors' JSON as text (a fleet's devices share a few distinct texts: each is parsed once).
    rows = session.connection().execute(
        sqlalchemy.select(
            col(DeviceRow.id),
            col(DeviceRow.org_id),
            col(DeviceRow.kit_id),
            col(DeviceRow.pi_index),
            col(DeviceRow.online),
            col(DeviceRow.status_since),
            col(DeviceRow.last_seen),
            col(DeviceRow.backlog),
            col(DeviceRow.meta_at),
            sqlalchemy.cast(col(DeviceRow.sensors), sqlalchemy.Text),
            sqlalchemy.cast(col(DeviceRow.missing), sqlalchemy.Text),
            col(DeviceRow.agent_version),
        ).where(col(DeviceRow.org_id).in_(sorted(orgs)), col(DeviceRow.revoked_at).is_(None))
    )
    health: dict[tuple[str | None, str | None], bool] = {}
    for (
        device,
        org_id,
        kit_id,
        pi,
        said_online,
        since,
        registry_seen,
        backlog,
        meta_at,
        sensors,
        missing,
        version,
    ) in rows:
        registered.add(device)
        store_seen = seen.get(device)
        last = registry_seen
        if store_seen is not None and (last is None or store_seen.last_seen > last):
            last = store_seen.last_seen
        # Fresh, unless a retained "offline" is newer than the last reading.
        online = (
            last is not None
            and now - last <= stale_after_s
            and not (since is not None and not said_online and since >= last)
        )
        due = dues.get((kit_id, pi)) if kit_id is not None else None
        entries.append(
            Entry(
                device,
                orgs[org_id],
                True,
                online,
                last,
                _healthy(health, sensors, missing) if meta_at is not None else None,
                backlog,
                calibration_state(due, now),
                due,
                kit_id,
                version,
                connected=bool(said_online),
            )
        )
    # Seen in the store but not registered (revoked devices, or another organisation's, excepted).
    others = [d for d in seen if d not in registered]
    known = registered_among(session, [(seen[d].org, d) for d in others])
    for device in others:
        if device in known:
            continue
        entry = seen[device]
        entries.append(
            Entry(
                device=device,
                org=entry.org,
                registered=False,
                online=now - entry.last_seen <= stale_after_s,
                last_seen=entry.last_seen,
            )
        )
    entries.sort(key=attrgetter("org", "device"))
    return entries


def matching(session: Session, entries: list[Entry], needle: str, borrowers: dict[int, str]) -> set[str]:
    """The devices of ``entries`` whose id, current deployment, kit or loan contains ``needle``
    (any case). ``borrowers`` names organisations (id -> name) for the loans."""
    needle = needle.strip().lower()
    found = {e.device for e in entries if needle in e.device.lower()}
    found.update(
        session.exec(
            select(DeploymentDeviceRow.device_id)
            .join(DeploymentRow, col(DeploymentRow.id) == DeploymentDeviceRow.deployment_id)
            .where(
                col(DeploymentDeviceRow.to_t).is_(None),
                func.lower(DeploymentRow.name).contains(needle, autoescape=True),
            )
        ).all()
    )
    kits = set(
        session.exec(
            select(KitRow.id).where(func.lower(KitRow.inventory_code).contains(needle, autoescape=True))
        ).all()
    )
    for loan in session.exec(select(LoanRow).where(col(LoanRow.returned_at).is_(None))).all():
        text = f"{borrowers.get(loan.org_id, loan.org_id)} ({loan.borrower})"
        if needle in text.lower():
            kits.add(loan.kit_id)
    found.update(e.device for e in entries if e.kit_id is not None and e.kit_id in kits)
    return found
