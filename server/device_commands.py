"""Commands to devices with state: queued, sent, answered, failed or expired, kept as history.

A command (:class:`~server.tables.DeviceCommandRow`) is queued in the transaction that asks for
it (:func:`queue_command`), with an id, an expiry and its arguments, checked here by the command's
model in :data:`COMMANDS`. :func:`dispatch` sends the queued commands of devices that are online:
each is first claimed with a lease in the registry (a conditional ``UPDATE``: only one server
replica wins it), then published with QoS 1 on ``suitcase/v1/{org}/{device}/cmd/{name}``, then
marked sent. A command to an offline device waits and goes out when the device's retained status
says ``online`` again (the listener calls :func:`dispatch` for it), or on the next sweep
(:func:`sweep`: expiry, and whatever a failed publish left queued). The device's reply on
``cmd/{name}/reply`` (:func:`apply_reply`) marks it answered (ok) or failed, with the reply kept.

If a replica dies between claiming and marking the command sent, its lease runs out after
:data:`LEASE_S` and another replica sends it again: a command goes out once, and twice only after
such a crash (the agent's commands are safe to repeat). The lease covers only the claim, the
publish (paho queues it, nothing waits for the broker) and the record, so it is short; a dispatch
that finds a due command under another replica's lease says when that lease ends
(:attr:`Dispatched.held_until`), and the listener sweeps again then rather than a whole
``command_sweep_s`` later: the re-send after a crash comes within :data:`LEASE_S`.

A new kind of command is one arguments model in :data:`COMMANDS`, and, when the wire's arguments
are not the stored ones (``config`` sends the version's content), one line in :data:`PAYLOADS`;
what the server does with an answer is one line in :data:`ON_ANSWER`.
"""

from __future__ import annotations

import importlib
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col, select

from kits.errors import SuitcaseError, WireError
from kits.wire import CommandReply, CommandRequest, build_topic, parse_topic
from server.tables import DeviceCommandRow, DeviceRow, OrganisationRow
from server.untrusted import load_json, safe_json, safe_text

__all__ = [
    "COMMANDS",
    "LEASE_S",
    "MAX_TTL_S",
    "ON_ANSWER",
    "PAYLOADS",
    "REPLY_SUBSCRIPTION",
    "SERVER_ONLY",
    "STATES",
    "BadCommand",
    "Dispatched",
    "Publisher",
    "apply_reply",
    "dispatch",
    "queue_command",
    "sweep",
]

log = logging.getLogger(__name__)

STATES = ("queued", "sent", "answered", "failed", "expired")
LEASE_S = 5.0  # claim, publish, record: milliseconds; a crashed holder frees the command this soon
DEFAULT_TTL_S = 86_400.0
MAX_TTL_S = 7 * 86_400.0
MAX_RESEND_S = 86_400.0  # the agent's own limit for one resend (edge.commands.CommandLimits)
REPLY_SUBSCRIPTION = "suitcase/v1/+/+/cmd/+/reply"
_REPLY_LIMIT = 64 * 1024  # characters of a reply's result kept


class BadCommand(SuitcaseError):
    """A command that cannot be queued: unknown name, bad arguments, or a device it cannot reach."""


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish with QoS 1; return whether the message was handed to a connected client."""
        ...


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingArgs(_Args):
    """``ping``: no arguments; the device answers with its time, agent version and uptime."""


class IdentifyArgs(_Args):
    """``identify``: blink the Pi's ACT LED so staff find it among others."""

    seconds: float = Field(default=10.0, ge=1, le=300, description="how long to blink")


class ResendArgs(_Args):
    """``resend``: publish again the readings stamped in a time range (to fill a gap in the store)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: float = Field(alias="from", description="UTC epoch seconds, inclusive")
    end: float = Field(alias="to", description="UTC epoch seconds, inclusive")

    @model_validator(mode="after")
    def _range(self) -> ResendArgs:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ValueError("from and to must be finite UTC epoch seconds")
        if self.end < self.start:
            raise ValueError(f"'to' ({self.end:g}) is before 'from' ({self.start:g}): swap them")
        if self.end - self.start > MAX_RESEND_S:
            raise ValueError(
                f"a resend covers at most {MAX_RESEND_S / 3600:g} h, this one "
                f"{(self.end - self.start) / 3600:g} h: send one command per day of the gap"
            )
        return self


class LogsArgs(_Args):
    """``logs``: the agent's last log lines."""

    lines: int = Field(default=100, ge=1, le=500)


class ConfigArgs(_Args):
    """``config``: push a version of the device's configuration (``server.device_config``)."""

    version: int = Field(ge=1, description="the device config version to push")


class UpdateArgs(_Args):
    """``update``: install an agent release and switch to it (``server.rollouts`` gives these)."""

    version: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")
    url: str = Field(pattern=r"^https?://\S{1,2000}$", description="where the device fetches the wheel")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="the wheel's SHA-256; the agent refuses another"
    )
    size: int = Field(ge=1, le=64 * 1024 * 1024)
    filename: str = Field(pattern=r"^iot_suitcase-[0-9A-Za-z.+_]{1,32}-py3-none-any\.whl$")
    deadline_s: float = Field(
        default=120.0, ge=5, le=3600, description="to report healthy, or be rolled back"
    )


# The commands the server sends, each with the model of its arguments (docs/architecture.md, "Commands").
COMMANDS: dict[str, type[_Args]] = {
    "ping": PingArgs,
    "identify": IdentifyArgs,
    "resend": ResendArgs,
    "logs": LogsArgs,
    "config": ConfigArgs,
    "update": UpdateArgs,
}

# Commands only the server itself gives (a rollout, server.rollouts), never a person directly.
SERVER_ONLY = frozenset({"update"})

# The wire arguments of a command, when they are not the stored ones (built at dispatch): the
# name of a function ``(session, row) -> dict`` as "module:function", imported when first needed.
PAYLOADS: dict[str, str] = {"config": "server.device_config:agent_payload"}

# What the server does when a device answers a command of that name (after the state is set,
# before the commit): "module:function" of ``(session, row, reply) -> None``.
ON_ANSWER: dict[str, str] = {
    "config": "server.device_config:on_answer",
    "update": "server.rollouts:on_update_answer",
}


def _hook(table: dict[str, str], name: str) -> Callable[..., Any] | None:
    where = table.get(name)
    if where is None:
        return None
    module, _, function = where.partition(":")
    found: Callable[..., Any] = getattr(importlib.import_module(module), function)
    return found


def _wire_args(session: Session, row: DeviceCommandRow) -> dict[str, Any]:
    build = _hook(PAYLOADS, row.name)
    if build is not None:
        payload: dict[str, Any] = build(session, row)
        return payload
    if row.name == "resend":  # stored by field name; the agent reads from/to
        return {"from": row.args["start"], "to": row.args["end"]}
    return dict(row.args)


def check_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Return ``args`` of command ``name`` validated, with defaults filled in.

    Raises:
        BadCommand: an unknown command or bad arguments, each named with what to send instead.
    """
    model = COMMANDS.get(name)
    if model is None:
        raise BadCommand(f"unknown command {name[:64]!r}: use one of {', '.join(COMMANDS)}")
    try:
        return model.model_validate(args).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise BadCommand(f"bad arguments for {name}: {problems}") from None


def queue_command(
    session: Session,
    device: DeviceRow,
    name: str,
    args: dict[str, Any],
    now: float,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    created_by: str = "",
) -> DeviceCommandRow:
    """Queue command ``name`` for ``device`` in ``session``'s transaction (the caller commits).

    Raises:
        BadCommand: unknown command, bad arguments, a revoked device, or an expiry out of range.
    """
    if device.revoked_at is not None:
        raise BadCommand(f"device {device.id!r} is revoked: it can receive no command; bind the Pi again")
    if not (isinstance(ttl_s, (int, float)) and 1 <= ttl_s <= MAX_TTL_S):
        raise BadCommand(f"ttl_s must be between 1 s and {MAX_TTL_S:g} s (7 days), got {ttl_s!r:.40}")
    row = DeviceCommandRow(
        command_id=str(uuid.uuid4()),
        device_id=device.id,
        org_id=device.org_id,
        name=name,
        args=check_args(name, args),
        created_at=now,
        created_by=created_by[:254],
        expires_at=now + ttl_s,
    )
    session.add(row)
    return row


@dataclass
class Dispatched:
    """What one :func:`dispatch` did, by command id."""

    sent: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # no broker connection: still queued
    failed: list[str] = field(default_factory=list)
    # The earliest end of a lease another replica holds on a due command (it may have died
    # holding it): dispatch again then.
    held_until: float | None = None

    def held(self, until: float) -> None:
        self.held_until = until if self.held_until is None else min(self.held_until, until)


def _claim(engine: Engine, row_id: int, owner: str, now: float) -> bool:
    """Take the lease of a queued command; False when another replica holds it (or it moved on)."""
    with engine.begin() as conn:
        result = conn.execute(
            update(DeviceCommandRow)
            .where(
                col(DeviceCommandRow.id) == row_id,
                col(DeviceCommandRow.state) == "queued",
                or_(col(DeviceCommandRow.lease_until).is_(None), col(DeviceCommandRow.lease_until) <= now),
            )
            .values(lease_owner=owner, lease_until=now + LEASE_S)
        )
        return bool(result.rowcount == 1)


def _finish(engine: Engine, row_id: int, owner: str, values: dict[str, Any]) -> None:
    """Record the outcome of our dispatch (not over a reply that already arrived)."""
    with engine.begin() as conn:
        conn.execute(
            update(DeviceCommandRow)
            .where(
                col(DeviceCommandRow.id) == row_id,
                col(DeviceCommandRow.lease_owner) == owner,
                col(DeviceCommandRow.state) == "queued",
            )
            .values(lease_owner=None, lease_until=None, **values)
        )


def dispatch(
    engine: Engine, publisher: Publisher | None, now: float, owner: str, device_id: str | None = None
) -> Dispatched:
    """Send the queued, unexpired commands of online devices (of ``device_id`` only, if given).

    Each command is claimed with a lease first, so several replicas calling this at once send it
    once. Oldest first, so a device gets its commands in the order they were given.
    """
    done = Dispatched()
    if publisher is None:
        return done
    with Session(engine) as session:
        query = (
            select(DeviceCommandRow, DeviceRow, OrganisationRow.slug)
            .join(DeviceRow, col(DeviceRow.id) == DeviceCommandRow.device_id)
            .join(OrganisationRow, col(OrganisationRow.id) == DeviceRow.org_id)
            .where(
                col(DeviceCommandRow.state) == "queued",
                col(DeviceCommandRow.expires_at) > now,
                col(DeviceRow.online).is_(True),
            )
            .order_by(col(DeviceCommandRow.id))
        )
        if device_id is not None:
            query = query.where(col(DeviceCommandRow.device_id) == device_id)
        due = session.exec(query).all()
        for row, device, org in due:
            assert row.id is not None
            if not _claim(engine, row.id, owner, now):
                if row.lease_until is not None and row.lease_until > now and row.lease_owner != owner:
                    done.held(row.lease_until)
                continue
            if device.revoked_at is not None:
                _finish(engine, row.id, owner, {"state": "failed", "error": "device revoked before sending"})
                done.failed.append(row.command_id)
                continue
            try:
                args = _wire_args(session, row)
            except SuitcaseError as exc:
                _finish(engine, row.id, owner, {"state": "failed", "error": safe_text(str(exc), 2000)})
                done.failed.append(row.command_id)
                continue
            request = CommandRequest(id=row.command_id, args=args)
            topic = build_topic(org, device.id, "cmd", row.name)
            if publisher.publish(topic, request.model_dump_json().encode()):
                sent = {"state": "sent", "sent_at": now, "attempts": row.attempts + 1}
                _finish(engine, row.id, owner, sent)
                log.info(
                    "command sent", extra={"device": device.id, "command": row.name, "id": row.command_id}
                )
                done.sent.append(row.command_id)
            else:
                _finish(engine, row.id, owner, {})
                done.waiting.append(row.command_id)
    return done


def sweep(engine: Engine, publisher: Publisher | None, now: float, owner: str) -> tuple[int, Dispatched]:
    """Expire commands past their expiry (queued or unanswered), then dispatch what is due.

    Returns how many expired, and what was dispatched.
    """
    with engine.begin() as conn:
        expired = conn.execute(
            update(DeviceCommandRow)
            .where(
                col(DeviceCommandRow.state).in_(("queued", "sent")),
                col(DeviceCommandRow.expires_at) <= now,
                or_(col(DeviceCommandRow.lease_until).is_(None), col(DeviceCommandRow.lease_until) <= now),
            )
            .values(
                state="expired",
                lease_owner=None,
                lease_until=None,
                error="not answered before its expiry: the device stayed offline or did not reply; "
                "send it again when the device is online",
            )
        ).rowcount
    return int(expired or 0), dispatch(engine, publisher, now, owner)


def apply_reply(session: Session, topic: str, payload: bytes, now: float) -> DeviceCommandRow | None:
    """Record a device's reply on ``cmd/{name}/reply``; return the command it answered, or None.

    Any payload is safe: what is not a reply to a command of this device changes nothing.
    """
    try:
        parsed = parse_topic(topic)
        reply = CommandReply.model_validate(load_json(payload))
    except (WireError, ValueError):
        return None
    if not (parsed.kind == "cmd" and parsed.reply) or safe_text(reply.id, 64) != reply.id:
        return None
    row = session.exec(select(DeviceCommandRow).where(DeviceCommandRow.command_id == reply.id)).first()
    device = session.get(DeviceRow, parsed.device)
    org = session.get(OrganisationRow, device.org_id) if device is not None else None
    if (
        row is None
        or row.device_id != parsed.device
        or row.name != parsed.command
        or org is None
        or org.slug != parsed.org
        or row.state in ("answered", "failed")
    ):
        return None  # not ours, forged on another device's behalf, or answered already
    row.state = "answered" if reply.ok else "failed"
    row.error = None if reply.ok else (safe_text(reply.error, 2000) or "refused by the device")
    result = safe_json(reply.result)
    row.reply = result if len(str(result)) <= _REPLY_LIMIT else {"truncated": str(result)[:_REPLY_LIMIT]}
    row.answered_at = now
    row.sent_at = row.sent_at or now  # the reply can beat the replica's own "sent"
    row.lease_owner, row.lease_until = None, None
    session.add(row)
    hook = _hook(ON_ANSWER, row.name)
    if hook is not None:
        hook(session, row, reply)
    session.commit()
    return row
