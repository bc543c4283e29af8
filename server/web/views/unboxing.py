"""``GET /kits/{id}/unboxing``: from opening the suitcase to live data, per Pi, live.

Each Pi shows its claim label (a QR when the page was opened with the codes, as right after the
kit was registered, or a new label on request) and a checklist that ``static/unboxing.js``
refreshes every 2 s from ``GET /kits/{id}/unboxing/status``: claimed, agent connected (the
retained ``status``), each expected sensor detected (``meta``), a first plausible reading, and
data in the store.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session, col, select

from gateway.store import Reader
from kits.quantities import QUANTITIES
from server.api.auth import PrincipalDep
from server.api.deps import ClockDep, SessionDep, StoreDep
from server.api.routes.kits import get_kit
from server.models import KitProfileRow
from server.tables import DeviceRow, KitPiRow, KitRow
from server.web.render import login_redirect, render, unit_label

__all__ = ["router", "unboxing_status"]

router = APIRouter()

Step = dict[str, Any]


def _step(key: str, label: str, ok: bool | None, detail: str = "") -> Step:
    return {
        "key": key,
        "label": label,
        "state": "ok" if ok else "wait" if ok is None else "todo",
        "detail": detail,
    }


def _unit(quantity: str) -> str:
    unit = unit_label(quantity)
    return f" {unit}" if unit else ""


def _plausible(quantity: str, value: float) -> bool:
    spec = QUANTITIES.get(quantity)
    return spec is not None and spec.low <= value <= spec.high


def unboxing_status(session: Session, store: Reader, kit: KitRow) -> dict[str, Any]:
    """The checklist of every Pi of ``kit``: a list of steps each ``ok``, ``todo`` or ``wait``."""
    profile_row = session.get(KitProfileRow, kit.profile_id)
    profile = profile_row.profile() if profile_row else None
    expected = [(s.sensor_name, s.part, s.path) for s in profile.sensors] if profile else []
    seen = {d.device: d for d in store.devices()}
    pis = session.exec(
        select(KitPiRow).where(KitPiRow.kit_id == kit.id).order_by(col(KitPiRow.pi_index))
    ).all()
    out = []
    for pi in pis:
        device = session.get(DeviceRow, pi.device_id) if pi.device_id else None
        steps: list[Step] = []
        if device is None:
            steps.append(_step("claimed", "Claimed: label scanned and bound to a deployment", False))
        elif pi.pending is not None:
            steps.append(
                _step(
                    "claimed",
                    "Claimed: label scanned and bound to a deployment",
                    None,
                    f"bound as {device.id}; waiting for the Pi to fetch its settings (is it on and online?)",
                )
            )
        else:
            steps.append(
                _step("claimed", "Claimed: label scanned and bound to a deployment", True, device.id)
            )
        online = device is not None and device.online
        steps.append(
            _step(
                "connected",
                "Agent connected to the broker",
                online,
                ""
                if device is None
                else ("online" if online else "not connected yet: check the Pi's power and Wi-Fi"),
            )
        )
        meta_sensors = {str(s.get("name")): s for s in (device.sensors if device else [])}
        latest = (
            store.latest([(seen[device.id].org, device.id)])
            if device is not None and device.id in seen
            else []
        )
        for name, part, address in expected:
            state = meta_sensors.get(name, {}).get("state")
            if device is None or device.meta_at is None:
                ok: bool | None = False
                detail = ""
            elif state is None or state == "missing":
                ok = False
                detail = f"not found at {address}: reseat its cable" if state == "missing" else "not reported"
            else:
                ok = True
                detail = f"{part} at {address}: {state}"
            steps.append(_step(f"sensor:{name}", f"Sensor {name} ({part}) detected", ok, detail))
        plausible = [r for r in latest if _plausible(r.quantity, r.value)]
        steps.append(
            _step(
                "reading",
                "First plausible reading",
                bool(plausible),
                ", ".join(f"{r.sensor}/{r.quantity} {r.value:.4g}{_unit(r.quantity)}" for r in plausible[:3]),
            )
        )
        count = seen[device.id].readings if device is not None and device.id in seen else 0
        steps.append(_step("stored", "Data in the store", count > 0, f"{count} readings" if count else ""))
        out.append(
            {
                "pi_index": pi.pi_index,
                "device": device.id if device else None,
                "claim_active": pi.claim_hash is not None and pi.claim_revoked_at is None,
                "steps": steps,
                "done": all(s["state"] == "ok" for s in steps),
            }
        )
    return {
        "kit": {"id": kit.id, "inventory_code": kit.inventory_code, "profile_id": kit.profile_id},
        "pis": out,
    }


@router.get("/kits/{kit_id}/unboxing", response_class=HTMLResponse)
def unboxing_page(
    kit_id: int, request: Request, principal: PrincipalDep, session: SessionDep, store: StoreDep
) -> Response:
    """Render the unboxing checklist of a kit (users of its owner or borrower)."""
    if principal.kind != "user":
        return login_redirect(request)
    kit = get_kit(session, principal, kit_id)
    profile_row = session.get(KitProfileRow, kit.profile_id)
    status = unboxing_status(session, store, kit)
    return render(
        request,
        "unboxing.html",
        {
            "kit": kit,
            "profile": profile_row.name if profile_row else kit.profile_id,
            "status": status,
            "config": {"kit_id": kit_id, "poll_ms": 2000},
        },
        principal=principal,
        section="kits",
    )


@router.get("/kits/{kit_id}/unboxing/status")
def unboxing_json(
    kit_id: int, principal: PrincipalDep, session: SessionDep, store: StoreDep, clock: ClockDep
) -> JSONResponse:
    """The checklist as JSON, for the page's live refresh."""
    if principal.kind == "anonymous":
        raise HTTPException(status_code=401, detail="log in to see a kit's unboxing checklist")
    kit = get_kit(session, principal, kit_id)
    return JSONResponse({**unboxing_status(session, store, kit), "time": clock()})
