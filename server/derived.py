"""A deployment's derived quantities: its versioned definitions, the reader that applies them, and
which quantities a person reads first.

The definitions (``kits.derived``) live in ``derived_configs``, one row per version, never
updated; the newest applies on read to every reading of the deployment's devices. Kinds without
parameters that the deployment's use-case names (counts per hour and day, dew point) apply without
a definition; those that need one (a bin's depth, a clamp's ratio and mains voltage) wait for it,
and until then the raw readings are what the pages show, with a note saying what to set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session, col, select

from gateway.store import DerivedReader, DeviceKey, Reader
from kits.derived import (
    INPUTS_OF_KIND,
    OUTPUTS_OF_KIND,
    Counts,
    DerivedSet,
    DewPoint,
    Rule,
    expand,
    outputs_of,
    parse,
)
from kits.models import UseCase
from kits.quantities import DERIVED_QUANTITIES
from kits.wire import Record
from server.models import UseCaseRow
from server.spans import DeviceSpan, device_spans
from server.tables import DeploymentRow, DerivedConfigRow

__all__ = [
    "Derived",
    "count_latest",
    "derived_of",
    "save_version",
    "versions",
]

# Kinds that need no parameter apply as soon as the use-case names them.
_DEFAULTS: dict[str, Rule] = {"counts": Counts(), "dew_point": DewPoint()}


@dataclass(frozen=True)
class Derived:
    """What a deployment derives, as its pages and exports need it.

    ``headline`` is the quantities a person reads first (None: every quantity is), ``missing``
    the kinds its use-case names that still lack their parameters (the raw readings are shown).
    """

    rules: list[Rule]
    version: int | None
    headline: list[str] | None
    missing: list[str]
    use_case: UseCase | None

    def reader(self, store: Reader, spans: Sequence[DeviceSpan]) -> Reader:
        """``store`` with the derived quantities of these rules added for ``spans``' devices."""
        if not self.rules:
            return store
        keys: set[DeviceKey] = {(s.org, s.device) for s in spans}
        return DerivedReader(store, {key: self.rules for key in keys})

    def is_headline(self, quantity: str) -> bool:
        """Whether ``quantity`` is one a person reads first (every one when none is named)."""
        return self.headline is None or quantity in self.headline

    def outputs(self) -> list[str]:
        """The derived quantities these rules make, in the registry's order."""
        made = {q for r in self.rules for q in outputs_of(r)}
        return [q for q in DERIVED_QUANTITIES if q in made]


def versions(session: Session, deployment_id: int) -> list[DerivedConfigRow]:
    """Every version of the deployment's definitions, newest first."""
    return list(
        session.exec(
            select(DerivedConfigRow)
            .where(DerivedConfigRow.deployment_id == deployment_id)
            .order_by(col(DerivedConfigRow.version).desc())
        ).all()
    )


def derived_of(session: Session, deployment: DeploymentRow) -> Derived:
    """Return the deployment's derivations (newest version, plus the use-case's defaults)."""
    assert deployment.id is not None
    newest = session.exec(
        select(DerivedConfigRow)
        .where(DerivedConfigRow.deployment_id == deployment.id)
        .order_by(col(DerivedConfigRow.version).desc())
        .limit(1)
    ).first()
    rules: list[Rule] = parse(newest.derivations) if newest is not None else []
    case_row = session.get(UseCaseRow, deployment.use_case_id) if deployment.use_case_id else None
    case = case_row.use_case() if case_row is not None else None
    kinds = {r.kind for r in rules}
    missing: list[str] = []
    for kind in case.derived if case is not None else []:
        if kind in kinds:
            continue
        if kind in _DEFAULTS:
            rules.append(_DEFAULTS[kind])
        else:
            missing.append(kind)
    headline = _headline(case, rules, missing)
    return Derived(rules, newest.version if newest else None, headline, missing, case)


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


def save_version(
    session: Session, deployment: DeploymentRow, body: DerivedSet, actor: str, now: float
) -> DerivedConfigRow:
    """Add a new version of the deployment's definitions (the caller commits)."""
    assert deployment.id is not None
    newest = versions(session, deployment.id)
    row = DerivedConfigRow(
        deployment_id=deployment.id,
        version=(newest[0].version + 1) if newest else 1,
        derivations=[r.model_dump(exclude_none=True) for r in body.derivations],
        created_at=now,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    return row


def spans_of(session: Session, deployment: DeploymentRow) -> list[DeviceSpan]:
    """The deployment's device spans (as ``server.spans.device_spans``)."""
    assert deployment.id is not None
    return device_spans(session, deployment.id)


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
