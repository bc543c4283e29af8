"""A calibration change goes to the Pi's devices as a new version of their device config.

The server is the single source of truth for calibration (docs/architecture.md, "Calibration").
When a calibration of a kit's Pi changes, each enrolled device of that Pi gets a new version of its
device config (``server.device_config``) whose ``calibration`` section holds all the Pi's current
records, pushed with the ``config`` command (``server.device_commands``): queued while the device
is offline or there is no broker, sent when it is online, answered or failed by its reply. There is
no second mechanism: a calibration is one section of the one device config.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.device_commands import Publisher, dispatch
from server.device_config import BadConfig, new_version, push
from server.fleet import current_calibrations
from server.tables import DeviceCommandRow, DeviceRow

__all__ = ["calibration_payload", "push_calibration", "queue_deliveries"]


def calibration_payload(session: Session, kit_id: int, pi_index: int) -> list[dict[str, Any]]:
    """The Pi's current calibration records, in the shape of ``kits.models.Calibration``."""
    return [
        {
            "sensor": c.sensor,
            "quantity": c.quantity,
            "offset": c.offset,
            "scale": c.scale,
            "version": c.version,
        }
        for c in sorted(current_calibrations(session, kit_id, pi_index), key=lambda c: (c.sensor, c.quantity))
    ]


def queue_deliveries(
    session: Session, kit_id: int, pi_index: int, now: float, by: str = ""
) -> list[DeviceCommandRow]:
    """Make a new config version with the Pi's calibration for each of its enrolled devices and
    queue its ``config`` command (the caller commits).

    A device whose new version cannot be made (a calibration of a sensor it does not have) gets a
    ``config`` command in state failed, with the reason, so the refusal shows in its history.
    """
    devices = session.exec(
        select(DeviceRow).where(
            DeviceRow.kit_id == kit_id, DeviceRow.pi_index == pi_index, col(DeviceRow.revoked_at).is_(None)
        )
    ).all()
    calibration = calibration_payload(session, kit_id, pi_index)
    queued = []
    for device in devices:
        try:
            version = new_version(
                session, device, {"calibration": calibration}, now, created_by=by, note="calibration"
            )
        except BadConfig as exc:
            refused = DeviceCommandRow(
                command_id=str(uuid.uuid4()),
                device_id=device.id,
                org_id=device.org_id,
                name="config",
                args={"calibration": calibration},
                state="failed",
                error=str(exc)[:2000],
                created_at=now,
                created_by=by[:254],
                expires_at=now,
            )
            session.add(refused)
            queued.append(refused)
            continue
        queued.append(push(session, device, version.version, now, created_by=by))
    return queued


def push_calibration(
    session: Session,
    engine: Engine,
    kit_id: int,
    pi_index: int,
    publisher: Publisher | None,
    now: float,
    by: str = "",
) -> list[DeviceCommandRow]:
    """Queue the Pi's calibration for its devices and send it to those online; commits."""
    rows = queue_deliveries(session, kit_id, pi_index, now, by)
    session.commit()
    owner = str(getattr(publisher, "owner", "server"))
    for device_id in sorted({r.device_id for r in rows if r.state == "queued"}):
        dispatch(engine, publisher, now, owner, device_id)
    for row in rows:
        session.refresh(row)
    return rows
