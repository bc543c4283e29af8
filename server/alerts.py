"""Alert rules, evaluated on a timer: each alert fires once and resolves once, with notifications.

An alert is one (rule, subject) occurrence: a device offline, a sensor stuck, a series over a
threshold for a window, a calibration due, a loan overdue. While the condition holds nothing is
resent (unlike alert managers that repeat every minute); when it clears, one "resolved" goes out.

Several server replicas may run the alert loop: a round holds the registry lease ``alerts``
(:class:`server.shared.Lease`), so rounds never overlap and each sees what the last committed;
each rule's changes commit only while the lease is still ours (kept in the same transaction).
A replica killed mid-round blocks the others for at most :data:`ALERT_LEASE_S`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlmodel import Session, col, select

from kits.wire import Record
from server.export import iter_readings
from server.fleet import current_calibrations
from server.outbox import Delivery, deliver_due, enqueue
from server.resources import Resources
from server.shared import Lease
from server.tables import (
    AlertRow,
    AlertRuleRow,
    DeploymentDeviceRow,
    DeviceRow,
    KitRow,
    LoanRow,
    OrganisationRow,
)

__all__ = [
    "ALERT_LEASE",
    "ALERT_LEASE_S",
    "KINDS",
    "Evaluation",
    "Violation",
    "evaluate",
    "notify_due",
    "queue_notifications",
]

log = logging.getLogger(__name__)

ALERT_LEASE = "alerts"
# How long a round's lease holds past its last kept rule: a replica that died mid-round (kill -9,
# a lost host) blocks every other replica's alerts this long. A live round keeps it at each rule's
# commit; a rule slower than this still commits unless another replica took the lease meanwhile
# (then that rule is rolled back and the round stops: the other replica evaluates it).
ALERT_LEASE_S = 30.0

KINDS = ("offline", "sensor_unhealthy", "stuck", "threshold", "calibration_due", "loan_overdue")


@dataclass(frozen=True)
class Violation:
    subject: str
    message: str
    value: float | None = None


@dataclass
class Evaluation:
    """What one evaluation round changed."""

    fired: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    skipped: bool = False  # another replica held the round's lease


@dataclass(frozen=True, slots=True)
class _Device:
    """What the rules read of a device (a row of 10,000 ORM objects cost most of a round)."""

    id: str
    online: bool
    status_since: float | None
    last_seen: float | None
    sensors: list[dict[str, Any]]
    missing: list[str]


def _devices(session: Session, rule: AlertRuleRow) -> list[_Device]:
    """The rule's devices (of its organisation, or of its deployment now), read once per round."""
    cache: dict[tuple[int, int | None], list[_Device]] = session.info.setdefault("alert_devices", {})
    key = (rule.org_id, rule.deployment_id)
    if key in cache:
        return cache[key]
    query = sqlalchemy.select(
        col(DeviceRow.id),
        col(DeviceRow.online),
        col(DeviceRow.status_since),
        col(DeviceRow.last_seen),
        sqlalchemy.cast(col(DeviceRow.sensors), sqlalchemy.Text),
        sqlalchemy.cast(col(DeviceRow.missing), sqlalchemy.Text),
    ).where(col(DeviceRow.org_id) == rule.org_id, col(DeviceRow.revoked_at).is_(None))
    if rule.deployment_id is not None:
        current = select(DeploymentDeviceRow.device_id).where(
            DeploymentDeviceRow.deployment_id == rule.deployment_id, col(DeploymentDeviceRow.to_t).is_(None)
        )
        query = query.where(col(DeviceRow.id).in_(current))
    parsed: dict[str | None, Any] = {}  # a fleet shares a few texts: each is parsed once

    def load(text: str | None) -> Any:
        if text not in parsed:
            parsed[text] = json.loads(text) if text else []
        return parsed[text] or []

    cache[key] = [
        _Device(device, bool(online), since, last, load(sensors), load(missing))
        for device, online, since, last, sensors, missing in session.connection().execute(
            query.order_by(col(DeviceRow.id))
        )
    ]
    return cache[key]


def _slug(session: Session, rule: AlertRuleRow) -> str:
    """The rule's organisation as the store keys it (its slug)."""
    org = session.get(OrganisationRow, rule.org_id)
    return org.slug if org is not None else ""


def _offline(session: Session, res: Resources, rule: AlertRuleRow, now: float) -> Iterable[Violation]:
    interval = float(rule.params.get("interval_s", 60.0))
    limit = interval * float(rule.params.get("intervals", 3))
    seen = {s.device: s.last_seen for s in res.store.devices(_slug(session, rule))}
    for device in _devices(session, rule):
        last = max((t for t in (seen.get(device.id), device.last_seen) if t is not None), default=None)
        if last is None or now - last > limit:
            age = "never" if last is None else f"{now - last:.0f} s ago"
            yield Violation(
                device.id,
                f"device {device.id} sent no data for over {limit:.0f} s (last: {age})",
                None if last is None else now - last,
            )
        elif device.status_since is not None and not device.online and (now - device.status_since) > limit:
            yield Violation(
                device.id, f"device {device.id} is offline since {now - device.status_since:.0f} s"
            )


def _unhealthy(session: Session, res: Resources, rule: AlertRuleRow, now: float) -> Iterable[Violation]:
    for device in _devices(session, rule):
        for name in device.missing:
            yield Violation(
                f"{device.id}:{name}", f"sensor {name} on {device.id} is missing: check its cable"
            )
        for sensor in device.sensors:
            state = sensor.get("state", "ok")
            if state not in ("ok", "stuck"):
                name = sensor.get("name") or sensor.get("part", "?")
                yield Violation(
                    f"{device.id}:{name}",
                    f"sensor {name} on {device.id} is {state}: {sensor.get('last_error') or 'see its meta'}",
                )


def _window_s(rule: AlertRuleRow) -> float | None:
    """How far back a rule looks at readings (its window), or None for rules that read none."""
    default = _WINDOWS_S.get(rule.kind)
    return None if default is None else float(rule.params.get("window_s", default))


def _newest(
    session: Session, res: Resources, rule: AlertRuleRow, slug: str, quantity: str | None, since: float
) -> dict[str, list[Record]]:
    """The newest reading of each series of the rule's devices (of ``quantity``) that is not older
    than ``since``: one store call per round for the rules of one organisation or deployment,
    bounded to the longest window among them (``alert_since``, set by the round)."""
    cache: dict[tuple[int, int | None], tuple[float, list[Record]]] = session.info.setdefault(
        "alert_latest", {}
    )
    key = (rule.org_id, rule.deployment_id)
    if key not in cache or cache[key][0] > since:
        devices = _devices(session, rule)
        back_to = min(since, session.info.get("alert_since", {}).get(key, since))
        keys = [(slug, d.id) for d in devices]
        cache[key] = (back_to, res.store.latest(keys, since=back_to) if keys else [])
    out: dict[str, list[Record]] = {}
    for record in cache[key][1]:
        if record.time >= since and (quantity is None or record.quantity == quantity):
            out.setdefault(record.device, []).append(record)
    return out


def _stuck(session: Session, res: Resources, rule: AlertRuleRow, now: float) -> Iterable[Violation]:
    window = _window_s(rule) or 0.0
    quantity = rule.params.get("quantity")
    slug = _slug(session, rule)
    devices = _devices(session, rule)
    start, end = now - window, now + 1
    # Series with no reading in the window cannot be stuck in it (the agent's own "stuck" flag
    # below needs no reading).
    newest = _newest(session, res, rule, slug, quantity, start)
    res.changes.observe_latest((r for rs in newest.values() for r in rs), now)
    for device in devices:
        flagged = {s.get("name") or s.get("part") for s in device.sensors if s.get("state") == "stuck"}
        # Read the window only where a series may be stuck: it has a reading in the window (its
        # newest is in it, or newer) and no two readings in the window are known to differ.
        maybe = [
            r
            for r in newest.get(device.id, [])
            if r.time >= start
            and not res.changes.changed_within((slug, device.id, r.sensor, r.quantity), start, end)
        ]
        values: dict[tuple[str, str], list[tuple[float, float]]] = {}
        if maybe:
            for record in iter_readings(res.store, slug, device.id, start, end, quantity=quantity):
                values.setdefault((record.sensor, record.quantity), []).append((record.time, record.value))
        for (sensor, qty), readings in values.items():
            res.changes.observe_window((slug, device.id, sensor, qty), readings)
            series = [v for _, v in readings]
            if len(series) >= 3 and max(series) == min(series):
                flagged.discard(sensor)
                yield Violation(
                    f"{device.id}:{sensor}/{qty}",
                    f"{sensor}/{qty} on {device.id} read {series[0]} for {window:.0f} s: stuck?",
                    series[0],
                )
        for sensor in sorted(n for n in flagged if n):
            yield Violation(
                f"{device.id}:{sensor}", f"the agent reports sensor {sensor} on {device.id} as stuck"
            )


def _cannot_fire(
    newest: list[Record], op: str, aggregate: str, limit: float, start: float, end: float
) -> bool:
    """True when the newest readings alone show the threshold is not crossed over the window: no
    reading in it, or (min over ">", max under "<") a newest reading in it on the right side."""
    if all(r.time < start for r in newest):
        return True
    inside = [r for r in newest if start <= r.time < end]
    if len(inside) != len(newest):
        return False
    if op == ">" and aggregate == "min":
        return all(r.value <= limit for r in inside)
    if op != ">" and aggregate == "max":
        return all(r.value >= limit for r in inside)
    return False


def _threshold(session: Session, res: Resources, rule: AlertRuleRow, now: float) -> Iterable[Violation]:
    p = rule.params
    quantity, op, limit = p["quantity"], p.get("op", ">"), float(p["value"])
    window = _window_s(rule) or 0.0
    aggregate = p.get("aggregate", "min" if op == ">" else "max")
    slug = _slug(session, rule)
    devices = _devices(session, rule)
    # A device with no reading in the window cannot fire (_cannot_fire): no need to read it.
    newest = _newest(session, res, rule, slug, quantity, now - window)
    for device in devices:
        if _cannot_fire(newest.get(device.id, []), op, aggregate, limit, now - window, now + 1):
            continue
        series: dict[str, list[float]] = {}
        first: dict[str, float] = {}
        for record in iter_readings(res.store, slug, device.id, now - window, now + 1, quantity=quantity):
            series.setdefault(record.sensor, []).append(record.value)
            first.setdefault(record.sensor, record.time)
        for sensor, values in series.items():
            # "for 10 min" needs data covering most of the window, not one reading.
            if first[sensor] > now - window * 0.9 and aggregate != "mean":
                continue
            value = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}[aggregate]
            if (value > limit) if op == ">" else (value < limit):
                yield Violation(
                    f"{device.id}:{sensor}/{quantity}",
                    f"{quantity} {aggregate} over {window / 60:.0f} min on {device.id} is {value:.1f} "
                    f"({op} {limit:g})",
                    value,
                )


def _calibration_due(session: Session, res: Resources, rule: AlertRuleRow, now: float) -> Iterable[Violation]:
    horizon = now + float(rule.params.get("within_days", 0)) * 86400
    for kit in session.exec(select(KitRow).where(KitRow.org_id == rule.org_id)).all():
        assert kit.id is not None
        for cal in current_calibrations(session, kit.id):
            if cal.due_at is not None and cal.due_at <= horizon:
                yield Violation(
                    f"kit:{kit.inventory_code}:pi{cal.pi_index}:{cal.sensor}/{cal.quantity}",
                    f"calibration of {cal.sensor}/{cal.quantity} on Pi {cal.pi_index} of kit "
                    f"{kit.inventory_code} is due",
                    cal.due_at,
                )


def _loan_overdue(session: Session, res: Resources, rule: AlertRuleRow, now: float) -> Iterable[Violation]:
    loans = session.exec(
        select(LoanRow).where(
            (col(LoanRow.owner_org_id) == rule.org_id) | (col(LoanRow.org_id) == rule.org_id),
            col(LoanRow.returned_at).is_(None),
            col(LoanRow.due_at) < now,
        )
    ).all()
    for loan in loans:
        kit = session.get(KitRow, loan.kit_id)
        code = kit.inventory_code if kit else loan.kit_id
        yield Violation(
            f"loan:{loan.id}",
            f"kit {code} lent to {loan.borrower} was due back {(now - loan.due_at) / 86400:.1f} days ago",
            now - loan.due_at,
        )


# The kinds that read readings in a window, and their default window (s).
_WINDOWS_S = {"stuck": 1800.0, "threshold": 600.0}

_CHECKS = {
    "offline": _offline,
    "sensor_unhealthy": _unhealthy,
    "stuck": _stuck,
    "threshold": _threshold,
    "calibration_due": _calibration_due,
    "loan_overdue": _loan_overdue,
}


def queue_notifications(
    session: Session, rule: AlertRuleRow, alert: AlertRow, event: str, now: float
) -> None:
    """Queue ``event`` (firing/resolved) of ``alert`` for the rule's webhooks and e-mail addresses.

    Queued in the caller's transaction (:mod:`server.outbox`): they are sent after it commits, with
    retries, and their outcomes are appended to ``alert.notifications`` as they come.
    """
    body = {
        "event": event,
        "alert": {
            "id": alert.id,
            "subject": alert.subject,
            "message": alert.message,
            "value": alert.value,
            "fired_at": alert.fired_at,
            "resolved_at": alert.resolved_at,
        },
        "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind, "org_id": rule.org_id},
    }
    for url in rule.webhooks:
        enqueue(session, "webhook", url, body, now, org_id=rule.org_id, alert_id=alert.id, event=event)
    if rule.emails:
        state = "FIRING" if event == "firing" else "RESOLVED"
        mail = {
            "subject": f"[{state}] {rule.name}: {alert.subject}",
            "text": f"{alert.message}\n\n{json.dumps(body, indent=2)}\n",
        }
        enqueue(
            session,
            "email",
            ", ".join(rule.emails),
            mail,
            now,
            org_id=rule.org_id,
            alert_id=alert.id,
            event=event,
        )


def evaluate(res: Resources, org_ids: set[int] | None = None, *, wait_s: float = 0.0) -> Evaluation:
    """Evaluate every enabled rule (of ``org_ids``, or all), firing and resolving alerts.

    The round holds the registry lease :data:`ALERT_LEASE`; when another replica holds it for
    longer than ``wait_s`` seconds, nothing is evaluated (``skipped``). Notifications are only
    queued here, in the transaction that records the alerts; send them after it with
    :func:`server.outbox.deliver_due`.
    """
    lease = Lease(res.engine, ALERT_LEASE, f"{res.replica}/{secrets.token_hex(4)}", ALERT_LEASE_S, res.clock)
    if not lease.acquire_within(wait_s):
        log.info("alert round skipped: another server replica is evaluating")
        return Evaluation(skipped=True)
    try:
        return _evaluate(res, org_ids, lease)
    finally:
        lease.release()


def _evaluate(res: Resources, org_ids: set[int] | None, lease: Lease) -> Evaluation:
    now = res.clock()
    result = Evaluation()
    with Session(res.engine) as session:
        query = select(AlertRuleRow).where(AlertRuleRow.enabled == True)  # noqa: E712
        if org_ids is not None:
            query = query.where(col(AlertRuleRow.org_id).in_(sorted(org_ids)))
        rules = session.exec(query.order_by(col(AlertRuleRow.id))).all()
        # The newest readings are read once per organisation or deployment, back to the longest
        # window of its rules.
        since: dict[tuple[int, int | None], float] = session.info.setdefault("alert_since", {})
        for rule in rules:
            try:
                window = _window_s(rule)
            except (TypeError, ValueError):
                continue  # the rule's own check fails on it, and says so
            if window is not None:
                key = (rule.org_id, rule.deployment_id)
                since[key] = min(since.get(key, now - window), now - window)
        for rule in rules:
            if session.get(OrganisationRow, rule.org_id) is None:
                continue
            try:
                violations = {v.subject: v for v in _CHECKS[rule.kind](session, res, rule, now)}
            except Exception:
                log.exception("alert rule failed", extra={"rule": rule.id})
                continue
            open_alerts = {
                a.subject: a
                for a in session.exec(
                    select(AlertRow).where(AlertRow.rule_id == rule.id, AlertRow.state == "firing")
                ).all()
            }
            fired: list[int] = []
            resolved: list[int] = []
            for subject, violation in violations.items():
                if subject in open_alerts:
                    continue
                alert = AlertRow(
                    rule_id=rule.id or 0,
                    org_id=rule.org_id,
                    subject=subject,
                    message=violation.message,
                    value=violation.value,
                    fired_at=now,
                )
                session.add(alert)
                session.flush()
                queue_notifications(session, rule, alert, "firing", now)
                fired.append(alert.id or 0)
            for subject, alert in open_alerts.items():
                if subject in violations:
                    continue
                alert.state, alert.resolved_at = "resolved", now
                session.add(alert)
                queue_notifications(session, rule, alert, "resolved", now)
                resolved.append(alert.id or 0)
            if not lease.keep(session):  # the round outlived its lease: another may be evaluating
                session.rollback()
                log.warning("alert round stopped: its lease ran out (rule %s not applied)", rule.id)
                break
            session.commit()
            result.fired += fired
            result.resolved += resolved
    return result


def notify_due(res: Resources, org_ids: set[int] | None = None) -> Delivery:
    """Send the queued notifications that are due (after :func:`evaluate` has committed)."""
    return deliver_due(res.engine, res.settings, res.clock(), policy=res.outbound, org_ids=org_ids)
