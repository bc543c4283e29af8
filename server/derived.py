"""A deployment's derived quantities: their definitions, versioned as the ``derived`` section of
each device's configuration, the reader that applies them, and what a person reads first.

The definitions (``kits.derived``) are a section of the device's versioned configuration
(``server.device_config``: never sent to the agent, applied by the server on read): setting them
for a deployment makes the next config version of each of its devices, so they share one version
history with sampling, sensors and calibration. The newest version applies on read to every
reading of the device, old ones included; the readings are never changed. Kinds without parameters
that the deployment's use-case names (counts per hour and day, dew point) apply without a
definition; those that need one (a bin's depth, a clamp's ratio and mains voltage) wait for it,
and until then the raw readings are what the pages show, with a note saying what to set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from sqlmodel import Session, col, or_, select

from gateway.store import DerivedReader, DeviceKey, Reader
from kits.derived import (
    INPUTS_OF_KIND,
    OUTPUTS_OF_KIND,
    Counts,
    DerivedSet,
    DewPoint,
    Rule,
    applies,
    expand,
    outputs_of,
    parse,
)
from kits.models import UseCase
from kits.quantities import DERIVED_QUANTITIES, QUANTITIES
from kits.wire import Record
from server.device_config import BadConfig, current, new_version
from server.models import UseCaseRow
from server.spans import DeviceSpan, device_spans, spans_of
from server.tables import DeploymentDeviceRow, DeploymentRow, DeviceConfigRow, DeviceRow

__all__ = [
    "Derived",
    "DevicesRead",
    "NoDevice",
    "count_latest",
    "derived_of",
    "devices_read",
    "history",
    "save",
]

# Kinds that need no parameter apply as soon as the use-case names them.
_DEFAULTS: dict[str, Rule] = {"counts": Counts(), "dew_point": DewPoint()}


class NoDevice(BadConfig):
    """Definitions for a deployment that has no device yet (they live in its devices' configs)."""


@dataclass(frozen=True)
class Derived:
    """What a deployment derives, as its pages and exports need it.

    ``rules`` is every definition in force (for display), ``by_device`` each device's (its
    config's ``derived`` section plus the use-case's parameter-free kinds), ``versions`` the config
    version of each device that holds it. ``headline`` is the quantities a person reads first
    (None: every quantity is), ``missing`` the kinds the use-case names that still lack their
    parameters (the raw readings are shown).
    """

    rules: list[Rule]
    by_device: dict[str, list[Rule]]
    defaults: list[Rule]
    versions: dict[str, int]
    headline: list[str] | None
    missing: list[str]
    use_case: UseCase | None
    devices: list[str] = field(default_factory=list)

    def rules_for(self, spans: Sequence[DeviceSpan]) -> dict[DeviceKey, list[Rule]]:
        """Each of ``spans``' devices' derivations, keyed as the store reads it."""
        return {(s.org, s.device): self.by_device.get(s.device, self.defaults) for s in spans}

    def reader(self, store: Reader, spans: Sequence[DeviceSpan]) -> Reader:
        """``store`` with each device's derived quantities added for ``spans``' devices."""
        return _reader(store, self.rules_for(spans))

    @property
    def counts(self) -> bool:
        """Whether the deployment counts (its counts are read per hour and per day, summed)."""
        return any(isinstance(r, Counts) for r in self.rules)

    def is_headline(self, quantity: str) -> bool:
        """Whether ``quantity`` is one a person reads first (every one when none is named)."""
        return self.headline is None or quantity in self.headline

    def order(self, quantity: str) -> tuple[int, int]:
        """Headline quantities first, in the use-case's order; the raw ones after, in the registry's."""
        if self.headline is not None and quantity in self.headline:
            return (0, self.headline.index(quantity))
        names = [*QUANTITIES, *DERIVED_QUANTITIES]
        return (1, names.index(quantity) if quantity in names else len(names))

    def outputs(self) -> list[str]:
        """The derived quantities these rules make, in the registry's order."""
        made = {q for r in self.rules for q in outputs_of(r)}
        return [q for q in DERIVED_QUANTITIES if q in made]


def _section(row: DeviceConfigRow | None) -> list[dict[str, Any]] | None:
    if row is None or "derived" not in row.body:
        return None
    value = row.body["derived"]
    return value if isinstance(value, list) else None


def _key(rule: Rule) -> str:
    return json.dumps(rule.model_dump(mode="json", exclude_none=True), sort_keys=True)


def derived_of(
    session: Session, deployment: DeploymentRow, spans: Sequence[DeviceSpan] | None = None
) -> Derived:
    """Return the deployment's derivations: each device's newest config version's ``derived``
    section, plus the use-case's parameter-free kinds.

    ``spans`` are the deployment's :func:`~server.spans.device_spans` when the caller has them
    already (a chart reads them too), so they are not read twice.
    """
    assert deployment.id is not None
    found = device_spans(session, deployment.id) if spans is None else spans
    devices = list(dict.fromkeys(s.device for s in found))
    case_row = session.get(UseCaseRow, deployment.use_case_id) if deployment.use_case_id else None
    case = case_row.use_case() if case_row is not None else None
    return _derived(case, devices, {device: current(session, device) for device in devices})


def _derived(case: UseCase | None, devices: list[str], newest: dict[str, DeviceConfigRow | None]) -> Derived:
    """The derivations of a deployment of ``case`` whose ``devices`` have the ``newest`` config
    versions (from the registry, one by one or in bulk)."""
    by_device: dict[str, list[Rule]] = {}
    versions: dict[str, int] = {}
    union: dict[str, Rule] = {}
    for device in devices:
        row = newest.get(device)
        stored = _section(row)
        if stored is None or row is None:
            continue
        rules = [r for r in parse(stored) if applies(r, device, r.sensor or "")]
        by_device[device] = rules
        versions[device] = row.version
        for r in rules:
            union.setdefault(_key(r), r)
    kinds = {r.kind for r in union.values()}
    defaults = [_DEFAULTS[k] for k in (case.derived if case is not None else []) if k in _DEFAULTS]
    named: list[str] = list(case.derived) if case is not None else []
    missing = [k for k in named if k not in kinds and k not in _DEFAULTS]
    for device, rules in by_device.items():
        own = {r.kind for r in rules}
        by_device[device] = rules + [d for d in defaults if d.kind not in own]
    rules_shown = list(union.values()) + [d for d in defaults if d.kind not in kinds]
    headline = _headline(case, rules_shown, missing)
    return Derived(rules_shown, by_device, defaults, versions, headline, missing, case, devices)


def _headline(case: UseCase | None, rules: list[Rule], missing: list[str]) -> list[str] | None:
    if case is None or not case.headline:
        return None
    made = {q for r in rules for q in outputs_of(r)}
    out: list[str] = []
    for name in case.headline:
        for q in expand(name):
            if q in DERIVED_QUANTITIES and q not in made:
                continue
            out.append(q)
    # A derived quantity that cannot be made yet: what it is made from is read first instead.
    wanted = {q for name in case.headline for q in expand(name)}
    for kind in missing:
        if set(OUTPUTS_OF_KIND[kind]) & wanted:
            out.extend(q for q in INPUTS_OF_KIND[kind] if q not in out)
    return out


def save(
    session: Session, deployment: DeploymentRow, body: DerivedSet, actor: str, now: float
) -> list[DeviceConfigRow]:
    """Make the next config version of each current device of the deployment, with its ``derived``
    section set to the definitions that apply to it (the caller commits).

    A device whose newest version already holds them gets none. Raises :class:`NoDevice` when the
    deployment has no device yet, :class:`BadConfig` when a definition names a device not in it.
    """
    assert deployment.id is not None
    devices = list(dict.fromkeys(s.device for s in device_spans(session, deployment.id) if s.end > now))
    if not devices:
        raise NoDevice(
            f"deployment {deployment.id} has no device yet: the derived quantities are part of each "
            "device's configuration, so enroll or claim its Pis first, then set them"
        )
    named = {r.device for r in body.derivations if r.device is not None}
    strangers = sorted(named - set(devices))
    if strangers:
        raise BadConfig(
            f"device {strangers[0]!r} is not in deployment {deployment.id}: name one of "
            f"{', '.join(devices)}, or leave device out to mean all of them"
        )
    made = []
    for device_id in devices:
        device = session.get(DeviceRow, device_id)
        if device is None:
            continue
        wanted = [r for r in body.derivations if r.device is None or r.device == device_id]
        stored = _section(current(session, device_id))
        if stored is not None and [_key(r) for r in parse(stored)] == [_key(r) for r in wanted]:
            continue  # its newest version holds them already
        rules = [r.model_dump(mode="json", exclude_none=True) for r in wanted]
        made.append(
            new_version(
                session,
                device,
                {"derived": rules},
                now,
                created_by=actor,
                note=f"derived quantities of deployment {deployment.id}",
            )
        )
    return made


def history(session: Session, deployment: DeploymentRow) -> list[dict[str, Any]]:
    """Every config version of the deployment's devices that changed their ``derived`` section,
    newest first: device, version, derivations, when and by whom."""
    assert deployment.id is not None
    devices = list(dict.fromkeys(s.device for s in device_spans(session, deployment.id)))
    out: list[dict[str, Any]] = []
    for device in devices:
        rows = session.exec(
            select(DeviceConfigRow)
            .where(DeviceConfigRow.device_id == device)
            .order_by(col(DeviceConfigRow.version))
        ).all()
        previous: list[dict[str, Any]] | None = None
        for row in rows:
            section = _section(row)
            if section is not None and section != previous:
                out.append(
                    {
                        "device": device,
                        "version": row.version,
                        "derivations": section,
                        "created_at": row.created_at,
                        "created_by": row.created_by,
                    }
                )
            previous = section
    return sorted(out, key=lambda v: (-v["created_at"], v["device"], -v["version"]))


def count_latest(
    store: Reader, spans: Sequence[DeviceSpan], now: float, tz: tzinfo, quantity: str = "passes"
) -> list[Record]:
    """The counts a person reads now, per device and sensor, timed ``now``: ``passes_per_hour`` (the
    sum over the whole minutes of the last hour) and ``passes_per_day`` (since local midnight in ``tz``).

    Devices that have counted nothing in the day give none (no count is not a count of 0).
    """
    midnight = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    hour: dict[tuple[str, str, str], float] = {}
    day: dict[tuple[str, str, str], float] = {}
    for org, device, span_from, span_to in spans:
        if span_to < now:
            continue
        for into, start, every in (
            (hour, math.ceil((now - 3600.0) / 60) * 60.0, 60.0),
            (day, midnight, 3600.0),
        ):
            lo = max(start, span_from)
            if lo >= now:
                continue
            for w in store.windows(org, device, lo, now, every, quantity=quantity):
                key = (org, device, w.sensor)
                into[key] = into.get(key, 0.0) + w.mean * w.count
    out = []
    for (org, device, sensor), total in sorted(day.items()):
        out.append(
            Record(
                org,
                device,
                sensor,
                f"{quantity}_per_hour",
                round(hour.get((org, device, sensor), 0.0), 9),
                now,
            )
        )
        out.append(Record(org, device, sensor, f"{quantity}_per_day", round(total, 9), now))
    return out


def _reader(store: Reader, keyed: dict[DeviceKey, list[Rule]]) -> Reader:
    return DerivedReader(store, keyed) if any(keyed.values()) else store


# A device in no deployment derives nothing: all it reads is raw, and every quantity is read first.
_NONE = Derived([], {}, [], {}, None, [], None)


class DevicesRead:
    """Devices read one by one rather than as a deployment (the live page, a device's readings in
    the API), each with the derivations of the deployment it is in now.

    ``groups`` holds each current deployment's :class:`Derived` with the spans of the devices read;
    a device in no deployment is in none of them and reads raw.
    """

    def __init__(self, groups: list[tuple[Derived, list[DeviceSpan]]]) -> None:
        self.groups = groups
        self._of = {(s.org, s.device): derived for derived, spans in groups for s in spans}

    def of(self, org: str, device: str) -> Derived:
        """The derivations of ``device`` (none when it is in no deployment)."""
        return self._of.get((org, device), _NONE)

    def reader(self, store: Reader) -> Reader:
        """``store`` with every device's derived quantities added."""
        keyed: dict[DeviceKey, list[Rule]] = {}
        for derived, spans in self.groups:
            keyed.update(derived.rules_for(spans))
        return _reader(store, keyed)

    def latest(
        self,
        store: Reader,
        now: float,
        zone: Callable[[str], tzinfo],
        devices: Collection[DeviceKey] | None = None,
    ) -> list[Record]:
        """The newest readings of ``devices`` (every device: None) with the derived quantities, and
        the counts per hour and per day (in the organisation's ``zone``) of the devices that count;
        each device's headline quantities first (:meth:`Derived.order`)."""
        reader = self.reader(store)
        records = reader.latest(devices)
        for derived, spans in self.groups:
            if derived.counts:
                for org in sorted({s.org for s in spans}):
                    mine = [s for s in spans if s.org == org]
                    records += count_latest(reader, mine, now, zone(org))
        return sorted(
            records,
            key=lambda r: (self.of(r.org, r.device).order(r.quantity), r.org, r.device, r.sensor),
        )


def devices_read(session: Session, devices: Collection[DeviceKey], now: float) -> DevicesRead:
    """The derivations of ``devices`` (org slug, device id), each from the deployment it is in at
    ``now``; what :func:`derived_of` computes per deployment, loaded in a few queries however many
    deployments there are (the live page reads every device at once)."""
    wanted = set(devices)
    ids = sorted({device for _, device in wanted})
    if not ids:
        return DevicesRead([])
    deployment_ids = session.exec(
        select(DeploymentDeviceRow.deployment_id)
        .where(col(DeploymentDeviceRow.device_id).in_(ids))
        .where(DeploymentDeviceRow.from_t <= now)
        .where(or_(col(DeploymentDeviceRow.to_t).is_(None), col(DeploymentDeviceRow.to_t) > now))
        .distinct()
    ).all()
    if not deployment_ids:
        return DevicesRead([])
    # Every device each of those deployments ever had (its derivations shown are their union).
    spans = spans_of(session, deployment_ids)
    deployments = session.exec(select(DeploymentRow).where(col(DeploymentRow.id).in_(deployment_ids))).all()
    case_ids = sorted({d.use_case_id for d in deployments if d.use_case_id})
    cases = {
        row.id: row.use_case()
        for row in session.exec(select(UseCaseRow).where(col(UseCaseRow.id).in_(case_ids))).all()
    }
    members = sorted({s.device for found in spans.values() for s in found})
    newest: dict[str, DeviceConfigRow | None] = {}
    for row in session.exec(
        select(DeviceConfigRow)
        .where(col(DeviceConfigRow.device_id).in_(members))
        .order_by(col(DeviceConfigRow.device_id), col(DeviceConfigRow.version))
    ).all():
        newest[row.device_id] = row  # ordered by version: the last one stays
    groups: list[tuple[Derived, list[DeviceSpan]]] = []
    for deployment in sorted(deployments, key=lambda d: d.id or 0):
        found = spans.get(deployment.id or 0, [])
        read = [s for s in found if s.start <= now < s.end and (s.org, s.device) in wanted]
        if read:
            case = cases.get(deployment.use_case_id) if deployment.use_case_id else None
            groups.append((_derived(case, list(dict.fromkeys(s.device for s in found)), newest), read))
    return DevicesRead(groups)
