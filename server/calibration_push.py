"""The server sends each Pi's current calibration to its device with the ``config`` command.

The server is the single source of truth for calibration (docs/architecture.md, "Calibration"). When
a calibration of a kit's Pi changes, every enrolled device of that Pi gets a delivery: a
``config`` command ``{"id": uuid, "args": {"calibration": [...]}}`` (QoS 1) on
``suitcase/v1/{org}/{device}/cmd/config``, carrying all the Pi's current records (the agent
replaces its calibration with the list). The command id is recorded; the device's reply on
``cmd/config/reply`` (read by :class:`server.listener.StatusListener`) marks it ok or error. Without
a broker, or while it cannot publish, the delivery stays ``pending`` and goes out when the device
next reports ``online``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from sqlmodel import Session, col, select

from kits.errors import WireError
from kits.wire import CommandReply, CommandRequest, build_topic, parse_topic
from server.fleet import current_calibrations
from server.tables import CalibrationDeliveryRow, DeviceRow, OrganisationRow
from server.untrusted import load_json, safe_text

__all__ = [
    "REPLY_SUBSCRIPTION",
    "Publisher",
    "apply_reply",
    "calibration_payload",
    "push_calibration",
    "queue_deliveries",
    "send_pending",
]

log = logging.getLogger(__name__)

REPLY_SUBSCRIPTION = "suitcase/v1/+/+/cmd/config/reply"


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish with QoS 1; return whether the message was handed to a connected client."""
        ...


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
    session: Session, kit_id: int, pi_index: int, now: float
) -> list[CalibrationDeliveryRow]:
    """Queue a delivery of the Pi's calibration to each of its enrolled devices (caller commits).

    Older unsent deliveries to those devices are superseded: only the newest list is sent.
    """
    devices = session.exec(
        select(DeviceRow).where(
            DeviceRow.kit_id == kit_id, DeviceRow.pi_index == pi_index, col(DeviceRow.revoked_at).is_(None)
        )
    ).all()
    calibration = calibration_payload(session, kit_id, pi_index)
    version = max((c["version"] for c in calibration), default=0)
    queued = []
    for device in devices:
        for old in session.exec(
            select(CalibrationDeliveryRow).where(
                CalibrationDeliveryRow.device_id == device.id, CalibrationDeliveryRow.state == "pending"
            )
        ).all():
            old.state = "superseded"
            session.add(old)
        row = CalibrationDeliveryRow(
            command_id=str(uuid.uuid4()),
            device_id=device.id,
            kit_id=kit_id,
            pi_index=pi_index,
            version=version,
            calibration=calibration,
            created_at=now,
        )
        session.add(row)
        queued.append(row)
    return queued


def _send(session: Session, row: CalibrationDeliveryRow, publisher: Publisher | None, now: float) -> bool:
    if publisher is None:
        return False
    device = session.get(DeviceRow, row.device_id)
    org = session.get(OrganisationRow, device.org_id) if device is not None else None
    if device is None or org is None or device.revoked_at is not None:
        row.state, row.error = "error", "device revoked or gone before delivery"
        session.add(row)
        return False
    request = CommandRequest(id=row.command_id, args={"calibration": row.calibration})
    topic = build_topic(org.slug, device.id, "cmd", "config")
    if not publisher.publish(topic, request.model_dump_json().encode()):
        return False
    row.state, row.sent_at = "sent", now
    session.add(row)
    log.info(
        "calibration sent", extra={"device": device.id, "version": row.version, "command": row.command_id}
    )
    return True


def push_calibration(
    session: Session, kit_id: int, pi_index: int, publisher: Publisher | None, now: float
) -> list[CalibrationDeliveryRow]:
    """Queue and (when a broker is connected) send the Pi's calibration now; commits."""
    rows = queue_deliveries(session, kit_id, pi_index, now)
    session.flush()
    for row in rows:
        _send(session, row, publisher, now)
    session.commit()
    return rows


def send_pending(session: Session, device_id: str, publisher: Publisher | None, now: float) -> int:
    """Send the device's pending delivery (on its ``online`` status); commits; return how many went."""
    rows = session.exec(
        select(CalibrationDeliveryRow).where(
            CalibrationDeliveryRow.device_id == device_id, CalibrationDeliveryRow.state == "pending"
        )
    ).all()
    sent = sum(_send(session, row, publisher, now) for row in rows)
    session.commit()
    return sent


def apply_reply(session: Session, topic: str, payload: bytes, now: float) -> bool:
    """Record a device's reply on ``cmd/config/reply``; return whether a delivery changed."""
    try:
        parsed = parse_topic(topic)
        reply = CommandReply.model_validate(load_json(payload))
    except (WireError, ValueError):
        return False
    if not (parsed.kind == "cmd" and parsed.command == "config" and parsed.reply):
        return False
    if safe_text(reply.id, 64) != reply.id:
        return False  # no command id of ours is that long or holds what a database refuses
    row = session.exec(
        select(CalibrationDeliveryRow).where(CalibrationDeliveryRow.command_id == reply.id)
    ).first()
    device = session.get(DeviceRow, parsed.device)
    org = session.get(OrganisationRow, device.org_id) if device is not None else None
    if row is None or row.device_id != parsed.device or org is None or org.slug != parsed.org:
        return False  # not ours, or a reply forged on another device's behalf
    row.state = "ok" if reply.ok else "error"
    row.error = None if reply.ok else (safe_text(reply.error, 2000) or "refused")
    row.replied_at = now
    session.add(row)
    session.commit()
    return True
