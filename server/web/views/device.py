"""``GET /fleet/devices/{device}``: operate one device from the server.

Its state and diagnostics (disk, outbox size, storage writes per hour, Wi-Fi), the config version
it has in force against the newest, actions (ping, identify, logs, resend a time range) and a
form for the next config version (publish interval; per sensor on/off, interval, filter), each
through the API (``static/device.js``); the command history with states and replies, and the
config versions with what each changed. ``GET /fleet/devices/{device}/live`` returns the parts
that change, which the page polls.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from server.api.auth import Principal, PrincipalDep, not_found
from server.api.deps import ClockDep, SessionDep, SettingsDep
from server.api.routes.devices import DEVICE_ID
from server.device_commands import COMMANDS
from server.device_config import diff
from server.settings import ServerSettings
from server.tables import DeviceCommandRow, DeviceConfigRow, DeviceRow, OrganisationRow
from server.web.i18n import Translator, pick_language
from server.web.render import ago, local_time, login_redirect, org_zone, render

__all__ = ["bytes_text", "diagnostics_view", "router"]

router = APIRouter()

POLL_MS = 2000


def bytes_text(value: float | None) -> str:
    """``1.2 GB``: a size in bytes for a person (decimal units, as disks are sold)."""
    if value is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def diagnostics_view(figures: dict[str, Any]) -> dict[str, str]:
    """The diagnostics of ``DeviceRow.diagnostics`` as text, "—" where the device did not tell."""
    free, total = figures.get("disk_free_bytes"), figures.get("disk_total_bytes")
    dbm, iface = figures.get("wifi_dbm"), figures.get("wifi_interface")
    writes = figures.get("writes_per_h")
    return {
        "disk": f"{bytes_text(free)} / {bytes_text(total)}" if free is not None else "—",
        "disk_low": "low" if free is not None and total and free / total < 0.1 else "",
        "outbox": bytes_text(figures.get("outbox_bytes")),
        "writes": (
            f"{bytes_text(writes)}/h" + (" (agent)" if figures.get("writes_source") == "agent" else "")
            if writes is not None
            else "—"
        ),
        "wifi": f"{dbm:.0f} dBm" + (f" ({iface})" if iface else "") if dbm is not None else "—",
        "wifi_weak": "weak" if dbm is not None and dbm < -75 else "",
    }


def _device(session: Session, principal: Principal, device: str) -> tuple[DeviceRow, OrganisationRow]:
    row = session.get(DeviceRow, device)
    org = session.get(OrganisationRow, row.org_id) if row is not None else None
    if row is None or org is None or principal.role_in(row.org_id) is None:
        raise not_found("device", device, "open the fleet page to find your devices")
    return row, org


def _context(
    request: Request,
    session: Session,
    settings: ServerSettings,
    principal: Principal,
    device: str,
    now: float,
) -> dict[str, Any]:
    row, org = _device(session, principal, device)
    t = Translator(pick_language(request))
    tz = org_zone(settings, org.slug)
    commands = session.exec(
        select(DeviceCommandRow)
        .where(DeviceCommandRow.device_id == device)
        .order_by(col(DeviceCommandRow.id).desc())
        .limit(30)
    ).all()
    versions = session.exec(
        select(DeviceConfigRow)
        .where(DeviceConfigRow.device_id == device)
        .order_by(col(DeviceConfigRow.version).desc())
        .limit(11)
    ).all()
    shown = []
    for index, version in enumerate(versions[:10]):
        before = versions[index + 1] if index + 1 < len(versions) else None
        shown.append(
            {
                "row": version,
                "when": local_time(version.created_at, tz),
                "changes": diff(before.body if before else None, version.body) if before else [],
                "first": before is None,
            }
        )
    return {
        "device": row,
        "org": org,
        "online": row.online,  # its retained status: what the commands wait for
        "last_seen": local_time(row.last_seen, tz),
        "ago": ago(None if row.last_seen is None else now - row.last_seen, t),
        "diagnostics": diagnostics_view(row.diagnostics or {}),
        "disabled": list((row.diagnostics or {}).get("disabled") or []),
        "commands": [
            {
                "row": c,
                "when": local_time(c.created_at, tz),
                "answered": local_time(c.answered_at, tz) if c.answered_at else "",
                "reply": _reply_text(c),
                "args": (
                    f"{_seconds(c.args.get('start'), tz)} .. {_seconds(c.args.get('end'), tz)}"
                    if c.name == "resend"
                    else json.dumps(c.args, sort_keys=True)
                    if c.args
                    else ""
                ),
            }
            for c in commands
        ],
        "versions": shown,
        "newest": versions[0] if versions else None,
        "operator": principal.can(row.org_id, "operator"),
        "names": list(COMMANDS),
    }


def _seconds(epoch: object, tz: ZoneInfo) -> str:
    """A resend's bound to the second, in the organisation's zone."""
    if not isinstance(epoch, (int, float)):
        return "—"
    return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _reply_text(command: DeviceCommandRow) -> str:
    reply = command.reply
    if command.name == "logs" and isinstance(reply, dict) and isinstance(reply.get("lines"), list):
        return "\n".join(str(line) for line in reply["lines"])
    if reply is None:
        return ""
    return json.dumps(reply, ensure_ascii=False, sort_keys=True)[:2000]


@router.get("/fleet/devices/{device}", response_class=HTMLResponse)
def device_page(
    device: DEVICE_ID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    """Render one device: state, diagnostics, actions, config versions, command history."""
    if principal.kind != "user":
        return login_redirect(request)
    context = _context(request, session, settings, principal, device, clock())
    newest = context["newest"]
    context["config"] = {
        "device": device,
        "live": f"/fleet/devices/{device}/live",
        "poll_ms": POLL_MS,
        "body": newest.body if newest is not None else {},
        "saved": Translator(pick_language(request))("device.config_saved"),
    }
    return render(request, "device.html", context, principal=principal, section="fleet")


@router.get("/fleet/devices/{device}/live", response_class=HTMLResponse)
def device_live(
    device: DEVICE_ID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    """Return the parts of the device page that change (polled by ``static/device.js``)."""
    if principal.kind != "user":
        return Response(status_code=401)
    context = _context(request, session, settings, principal, device, clock())
    return render(request, "_device_live.html", context, principal=principal)
