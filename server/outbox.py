"""The outbox: messages for the outside world are queued in the registry and sent after commit.

Whoever decides that something must go out (the alert evaluation today, data targets later) adds
an :class:`~server.tables.OutboundMessageRow` in its own transaction with :func:`enqueue`; nothing
is sent while that transaction is open. :func:`deliver_due` then claims due messages one by one
(a lease in the row, so several server replicas never send one message twice at the same time),
sends each through :mod:`server.outbound`, and records the outcome. A failed attempt is retried
with exponential backoff (``notify_backoff_s`` doubled per try, at most 6 h apart) until
``notify_attempts``; a target the policy refuses is not retried. Works on SQLite and PostgreSQL.

A new kind of message is one sender function and one line in :data:`SENDERS`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col, select

from kits.errors import SuitcaseError
from server.outbound import DeliveryFailed, OutboundPolicy, OutboundRefused, post_json, smtp_connection
from server.settings import ServerSettings
from server.tables import AlertRow, OutboundMessageRow

__all__ = ["SENDERS", "Delivery", "Undeliverable", "deliver_due", "enqueue"]

log = logging.getLogger(__name__)

LEASE_S = 120.0
MAX_DELAY_S = 6 * 3600.0


class Undeliverable(SuitcaseError):
    """The message can never be sent as it is (refused target, missing configuration): no retry."""


Sender = Callable[[ServerSettings, OutboundPolicy, str, dict[str, Any]], None]


def _send_webhook(
    settings: ServerSettings, policy: OutboundPolicy, target: str, payload: dict[str, Any]
) -> None:
    post_json(policy, target, payload, timeout=10.0)


def _send_email(
    settings: ServerSettings, policy: OutboundPolicy, target: str, payload: dict[str, Any]
) -> None:
    if settings.smtp_host is None:
        raise Undeliverable("no SMTP server: set SUITCASE_SERVER_SMTP_HOST")
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = target
    message["Subject"] = str(payload["subject"])
    message.set_content(str(payload["text"]))
    smtp = smtp_connection(policy, settings.smtp_host, settings.smtp_port)
    try:
        smtp.send_message(message)
    except (OSError, Exception) as exc:  # smtplib's errors and a dropped connection alike
        log.warning("e-mail not accepted", extra={"error": type(exc).__name__})
        raise DeliveryFailed("the mail server did not accept the message") from None
    finally:
        try:
            smtp.quit()
        except Exception:
            smtp.close()


SENDERS: dict[str, Sender] = {
    "webhook": _send_webhook,
    "email": _send_email,
}


def enqueue(
    session: Session,
    kind: str,
    target: str,
    payload: dict[str, Any],
    now: float,
    *,
    org_id: int | None = None,
    alert_id: int | None = None,
    event: str = "",
) -> OutboundMessageRow:
    """Add a message to the outbox in ``session``'s transaction; it is sent after commit."""
    if kind not in SENDERS:
        raise ValueError(
            f"no sender for outbound messages of kind {kind!r}: add one to server.outbox.SENDERS"
        )
    row = OutboundMessageRow(
        kind=kind,
        target=target,
        payload=json.loads(json.dumps(payload)),
        org_id=org_id,
        alert_id=alert_id,
        event=event,
        next_at=now,
        created_at=now,
    )
    session.add(row)
    return row


@dataclass
class Delivery:
    """What one round of :func:`deliver_due` did, by message id."""

    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _claim(engine: Engine, message_id: int, now: float) -> bool:
    with Session(engine) as session:
        result = session.connection().execute(
            update(OutboundMessageRow)
            .where(
                col(OutboundMessageRow.id) == message_id,
                col(OutboundMessageRow.state) == "pending",
                or_(col(OutboundMessageRow.lease_until).is_(None), col(OutboundMessageRow.lease_until) < now),
            )
            .values(lease_until=now + LEASE_S)
        )
        session.commit()
        return result.rowcount == 1


def _outcome_target(row: OutboundMessageRow) -> str:
    return "smtp" if row.kind == "email" else row.target


def deliver_due(
    engine: Engine,
    settings: ServerSettings,
    now: float,
    *,
    policy: OutboundPolicy | None = None,
    org_ids: set[int] | None = None,
    limit: int = 100,
) -> Delivery:
    """Send the messages due at ``now`` (of ``org_ids``, or all), at most ``limit``; never inside
    a registry transaction. Each message's failure is that message's: the others still go."""
    policy = policy or OutboundPolicy.from_settings(settings.outbound_allow)
    done = Delivery()
    with Session(engine) as session:
        query = select(OutboundMessageRow.id).where(
            OutboundMessageRow.state == "pending", col(OutboundMessageRow.next_at) <= now
        )
        if org_ids is not None:
            query = query.where(col(OutboundMessageRow.org_id).in_(sorted(org_ids)))
        due = [
            i for i in session.exec(query.order_by(col(OutboundMessageRow.next_at)).limit(limit)).all() if i
        ]
    for message_id in due:
        if not _claim(engine, message_id, now):
            continue  # another replica has it
        with Session(engine) as session:
            row = session.get(OutboundMessageRow, message_id)
            assert row is not None
            kind, target, payload = row.kind, row.target, dict(row.payload)
        error: str | None = None
        permanent = False
        try:
            SENDERS[kind](settings, policy, target, payload)
        except (OutboundRefused, Undeliverable) as exc:
            error, permanent = str(exc), True
        except DeliveryFailed as exc:
            error = str(exc)
        except Exception as exc:  # a sender's bug must not stop the other messages
            log.exception("outbound sender failed", extra={"outbound_id": message_id, "kind": kind})
            error = f"sending failed ({type(exc).__name__})"
        _record(engine, settings, message_id, now, error, permanent, done)
    return done


def _record(
    engine: Engine,
    settings: ServerSettings,
    message_id: int,
    now: float,
    error: str | None,
    permanent: bool,
    done: Delivery,
) -> None:
    with Session(engine) as session:
        row = session.get(OutboundMessageRow, message_id)
        assert row is not None
        row.attempts += 1
        row.lease_until = None
        if error is None:
            row.state, row.done_at, row.last_error = "sent", now, None
            done.sent.append(message_id)
        elif permanent or row.attempts >= settings.notify_attempts:
            row.state, row.done_at, row.last_error = "failed", now, error[:500]
            done.failed.append(message_id)
            log.warning(
                "outbound message given up",
                extra={"outbound_id": message_id, "kind": row.kind, "attempts": row.attempts, "error": error},
            )
        else:
            delay = min(settings.notify_backoff_s * 2 ** (row.attempts - 1), MAX_DELAY_S)
            row.next_at, row.last_error = now + delay, error[:500]
            done.retrying.append(message_id)
        if row.alert_id is not None and row.state != "pending":
            alert = session.get(AlertRow, row.alert_id)
            if alert is not None:
                outcome: dict[str, Any] = {
                    "event": row.event,
                    "target": _outcome_target(row),
                    "ok": error is None,
                    "attempts": row.attempts,
                }
                if error is not None:
                    outcome["error"] = error[:500]
                alert.notifications = [*alert.notifications, outcome]
                session.add(alert)
        session.add(row)
        session.commit()
