"""Staged rollouts of an agent release: canaries, then a share, then all; stop on a failure.

:func:`start_rollout` puts every enrolled device in a ring: ring 0 the canaries (named, or the
first few in a fixed order), ring 1 ``share_percent`` of the others, ring 2 the rest. A device,
or every device of an organisation, that opted out is listed as ``opted_out`` and never offered
anything. The current ring's devices get an ``update`` command (``server.device_commands``: it
waits while a device is offline and goes out when it is back).

:func:`advance` (after each ``update`` reply, and on every sweep) moves the rollout on:

- a device of the current ring whose update failed (refused, rolled back by the agent, or not
  answered before the command's expiry) stops the rollout by itself, with the device and its
  reason: the devices not offered yet keep their version, and update commands not sent yet are
  withdrawn;
- when every device of the current ring has updated, and the last did so ``soak_s`` ago, the
  next ring is offered; after ring 2 the rollout is done.

One rollout runs at a time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from kits.errors import SuitcaseError
from kits.wire import CommandReply
from server.agent_releases import wheel_url
from server.tables import (
    AgentReleaseRow,
    DeviceCommandRow,
    DeviceRow,
    OrganisationRow,
    RolloutRow,
    RolloutTargetRow,
)

__all__ = [
    "RING_NAMES",
    "BadRollout",
    "Progress",
    "advance",
    "advance_running",
    "on_update_answer",
    "progress",
    "start_rollout",
    "stop_rollout",
    "summary",
]

log = logging.getLogger(__name__)

RING_NAMES = ("canary", "share", "all")


class BadRollout(SuitcaseError):
    """A rollout that cannot start (unknown canary, another rollout running, no device to update)."""


def _order(rollout_seed: str, device_id: str) -> str:
    return hashlib.sha256(f"{rollout_seed}:{device_id}".encode()).hexdigest()


def start_rollout(
    session: Session,
    release: AgentReleaseRow,
    now: float,
    *,
    base_url: str,
    canaries: list[str] | None = None,
    canary_count: int = 1,
    share_percent: int = 25,
    deadline_s: float = 120.0,
    soak_s: float = 0.0,
    ttl_s: float = 86_400.0,
    created_by: str = "",
) -> RolloutRow:
    """Start a rollout of ``release`` and offer it to the canaries (the caller commits).

    Raises:
        BadRollout: another rollout is running, a named canary is unknown, revoked or opted out,
            or no device may be updated.
    """
    running = session.exec(select(RolloutRow).where(RolloutRow.state == "running")).first()
    if running is not None:
        raise BadRollout(f"rollout {running.id} is still running: wait for it, or stop it first")
    devices = session.exec(select(DeviceRow).where(col(DeviceRow.revoked_at).is_(None))).all()
    opted_orgs = {
        o.id for o in session.exec(select(OrganisationRow).where(col(OrganisationRow.updates_opt_out)))
    }
    opted = {d.id for d in devices if d.updates_opt_out or d.org_id in opted_orgs}
    by_id = {d.id: d for d in devices}
    for name in canaries or []:
        if name not in by_id:
            raise BadRollout(
                f"canary {name[:64]!r} is not an enrolled device: name devices from the fleet page"
            )
        if name in opted:
            raise BadRollout(f"canary {name!r} opted out of updates: pick another canary")
    seed = f"{release.version}:{now}"
    eligible = sorted((d.id for d in devices if d.id not in opted), key=lambda d: _order(seed, d))
    if not eligible:
        raise BadRollout(
            "no device may take this update: every enrolled device opted out, or none is enrolled"
        )
    ring0 = list(canaries) if canaries else eligible[: max(1, canary_count)]
    rest = [d for d in eligible if d not in ring0]
    share = math.ceil(len(rest) * share_percent / 100)
    rollout = RolloutRow(
        release_id=release.id or 0,
        share_percent=share_percent,
        deadline_s=deadline_s,
        soak_s=soak_s,
        ttl_s=ttl_s,
        base_url=base_url,
        created_at=now,
        created_by=created_by[:254],
        ring_started_at=now,
    )
    session.add(rollout)
    session.flush()
    assert rollout.id is not None
    rings = [(0, ring0), (1, rest[:share]), (2, rest[share:])]
    for ring, ids in rings:
        for device_id in ids:
            session.add(
                RolloutTargetRow(
                    rollout_id=rollout.id,
                    device_id=device_id,
                    ring=ring,
                    from_version=by_id[device_id].agent_version,
                )
            )
    for device_id in sorted(opted):
        session.add(
            RolloutTargetRow(
                rollout_id=rollout.id,
                device_id=device_id,
                ring=-1,
                state="opted_out",
                from_version=by_id[device_id].agent_version,
            )
        )
    session.flush()
    log.info("rollout started", extra={"rollout": rollout.id, "version": release.version})
    advance(session, rollout, now)
    return rollout


def _offer(session: Session, rollout: RolloutRow, target: RolloutTargetRow, now: float) -> None:
    from server.device_commands import BadCommand, queue_command

    release = session.get(AgentReleaseRow, rollout.release_id)
    device = session.get(DeviceRow, target.device_id)
    assert release is not None
    if device is None or device.revoked_at is not None:
        target.state, target.detail, target.finished_at = "failed", "device revoked before the offer", now
        session.add(target)
        return
    args = {
        "version": release.version,
        "url": wheel_url(rollout.base_url, release),
        "sha256": release.sha256,
        "size": release.size,
        "filename": release.filename,
        "deadline_s": rollout.deadline_s,
    }
    # Claimed with a conditional UPDATE: of two replicas advancing the rollout at once, one offers.
    claimed = (
        session.connection()
        .execute(
            update(RolloutTargetRow)
            .where(col(RolloutTargetRow.id) == target.id, col(RolloutTargetRow.state) == "waiting")
            .values(state="offered", offered_at=now)
        )
        .rowcount
    )
    if claimed != 1:
        session.refresh(target)
        return
    try:
        command = queue_command(
            session, device, "update", args, now, ttl_s=rollout.ttl_s, created_by=f"rollout {rollout.id}"
        )
    except BadCommand as exc:
        target.state, target.detail, target.finished_at = "failed", str(exc)[:2000], now
        session.add(target)
        return
    target.state, target.command_id, target.offered_at = "offered", command.command_id, now
    session.add(target)


def _sync(session: Session, target: RolloutTargetRow, now: float) -> None:
    """Take an offered target's outcome from its command (an expiry has no reply to hook)."""
    if target.state != "offered" or target.command_id is None:
        return
    command = session.exec(
        select(DeviceCommandRow).where(DeviceCommandRow.command_id == target.command_id)
    ).first()
    if command is None:
        return
    if command.state == "answered":
        target.state, target.finished_at = "updated", command.answered_at or now
    elif command.state in ("failed", "expired"):
        target.state, target.finished_at = "failed", command.answered_at or now
        target.detail = (command.error or command.state)[:2000]
    session.add(target)


def _targets(session: Session, rollout_id: int) -> list[RolloutTargetRow]:
    return list(
        session.exec(
            select(RolloutTargetRow)
            .where(RolloutTargetRow.rollout_id == rollout_id)
            .order_by(col(RolloutTargetRow.id))
        ).all()
    )


def stop_rollout(session: Session, rollout: RolloutRow, reason: str, now: float) -> None:
    """Stop ``rollout``: no more offers; update commands not sent yet are withdrawn (caller commits)."""
    rollout.state, rollout.reason, rollout.finished_at = "stopped", reason[:2000], now
    session.add(rollout)
    ids = [t.command_id for t in _targets(session, rollout.id or 0) if t.state == "offered" and t.command_id]
    if ids:
        session.execute(
            update(DeviceCommandRow)
            .where(col(DeviceCommandRow.command_id).in_(ids), col(DeviceCommandRow.state) == "queued")
            .values(state="failed", error=f"withdrawn: rollout {rollout.id} stopped ({reason[:200]})")
        )
    log.warning("rollout stopped", extra={"rollout": rollout.id, "reason": reason[:200]})


def advance(session: Session, rollout: RolloutRow, now: float) -> None:
    """Move ``rollout`` on: stop on a failure of its ring, or offer the next ring (caller commits)."""
    if rollout.state != "running" or rollout.id is None:
        return
    while True:
        targets = _targets(session, rollout.id)
        ring = [t for t in targets if t.ring == rollout.ring]
        for target in ring:
            _sync(session, target, now)
        failed = [t for t in ring if t.state == "failed"]
        if failed:
            first = failed[0]
            waiting = sum(t.ring > rollout.ring for t in targets)
            stop_rollout(
                session,
                rollout,
                f"{RING_NAMES[rollout.ring]} device {first.device_id} failed: {first.detail}: the rollout "
                f"stopped itself; the {waiting} devices of later rings keep their version",
                now,
            )
            return
        for target in ring:
            if target.state == "waiting":
                _offer(session, rollout, target, now)
        if any(t.state != "updated" for t in ring):
            return
        last = max((t.finished_at or now for t in ring), default=rollout.ring_started_at or now)
        if ring and now - last < rollout.soak_s:
            return
        if rollout.ring >= len(RING_NAMES) - 1:
            rollout.state, rollout.finished_at = "done", now
            session.add(rollout)
            log.info("rollout done", extra={"rollout": rollout.id})
            return
        moved = (
            session.connection()
            .execute(
                update(RolloutRow)
                .where(col(RolloutRow.id) == rollout.id, col(RolloutRow.ring) == rollout.ring)
                .values(ring=rollout.ring + 1, ring_started_at=now)
            )
            .rowcount
        )
        session.refresh(rollout)
        if moved != 1 or rollout.state != "running":
            return


def advance_running(session: Session, now: float) -> None:
    """Advance the running rollout, if any (the sweep; the caller commits)."""
    rollout = session.exec(select(RolloutRow).where(RolloutRow.state == "running")).first()
    if rollout is not None:
        advance(session, rollout, now)


def on_update_answer(session: Session, command: DeviceCommandRow, reply: CommandReply) -> None:
    """The device answered an ``update`` (``server.device_commands.ON_ANSWER``): move its rollout on."""
    target = session.exec(
        select(RolloutTargetRow).where(RolloutTargetRow.command_id == command.command_id)
    ).first()
    if target is None:
        return
    now = command.answered_at or 0.0
    _sync(session, target, now)
    rollout = session.get(RolloutRow, target.rollout_id)
    if rollout is not None:
        advance(session, rollout, now)


@dataclass
class Progress:
    """Where a rollout is, ring by ring, with its figures."""

    rollout: RolloutRow
    version: str
    rings: list[dict[str, int]] = field(default_factory=list)
    opted_out: int = 0
    targets: list[RolloutTargetRow] = field(default_factory=list)
    figures: dict[str, float | None] = field(default_factory=dict)


def progress(session: Session, rollout: RolloutRow, device_ids: AbstractSet[str] | None = None) -> Progress:
    """The rollout's counts per ring and state (only of ``device_ids``, when given)."""
    release = session.get(AgentReleaseRow, rollout.release_id)
    targets = [
        t for t in _targets(session, rollout.id or 0) if device_ids is None or t.device_id in device_ids
    ]
    rings = []
    for ring in range(len(RING_NAMES)):
        counts: dict[str, int] = {"waiting": 0, "offered": 0, "updated": 0, "failed": 0}
        for t in targets:
            if t.ring == ring:
                counts[t.state] = counts.get(t.state, 0) + 1
        rings.append(counts)

    def done_after(ring: int | None) -> float | None:
        chosen = [t for t in targets if t.ring >= 0 and (ring is None or t.ring == ring)]
        if not chosen or any(t.state != "updated" for t in chosen):
            return None
        return round(max(t.finished_at or 0.0 for t in chosen) - rollout.created_at, 3)

    return Progress(
        rollout=rollout,
        version=release.version if release is not None else "?",
        rings=rings,
        opted_out=sum(t.state == "opted_out" for t in targets),
        targets=targets,
        figures={"canary_healthy_after_s": done_after(0), "all_updated_after_s": done_after(None)},
    )


def summary(p: Progress) -> dict[str, Any]:
    """A rollout's progress as JSON (the API's and the page's)."""
    r = p.rollout
    return {
        "id": r.id,
        "version": p.version,
        "state": r.state,
        "ring": RING_NAMES[r.ring],
        "reason": r.reason,
        "share_percent": r.share_percent,
        "deadline_s": r.deadline_s,
        "soak_s": r.soak_s,
        "created_at": r.created_at,
        "finished_at": r.finished_at,
        "rings": {RING_NAMES[i]: counts for i, counts in enumerate(p.rings)},
        "opted_out": p.opted_out,
        "figures": p.figures,
        "devices": [
            {
                "device": t.device_id,
                "ring": RING_NAMES[t.ring] if t.ring >= 0 else "opted_out",
                "state": t.state,
                "from_version": t.from_version,
                "command_id": t.command_id,
                "detail": t.detail,
            }
            for t in p.targets
        ],
    }
