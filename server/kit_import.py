"""Importing kits and their Pis from CSV, all or nothing: checked against the registry, then written
in one transaction, with every bound Pi's broker account made in batches.

A Pi with a ``deployment`` is bound as ``POST /claims/bind`` would bind it (device, broker account,
device token, its config sealed to its claim code for its next poll); the rest wait for a staff
member to scan their label.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from kits.models import KitProfile
from server.broker_admin import BrokerAdmin
from server.fleet import Issued, issue_device
from server.kit_csv import CsvProblem, ImportPlan
from server.models import KitProfileRow
from server.sealed import seal
from server.security import hash_secret, new_claim_code
from server.settings import ServerSettings
from server.tables import DeploymentRow, KitPiRow, KitRow

__all__ = ["ImportRefused", "ImportResult", "NewClaim", "apply_import", "check_import"]

log = logging.getLogger(__name__)


class ImportRefused(Exception):
    """The import was refused; nothing was written. ``problems`` names each row and column."""

    def __init__(self, problems: list[CsvProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems[:5]))
        self.problems = problems


@dataclass(frozen=True)
class NewClaim:
    kit: str
    pi: int
    code: str


@dataclass
class ImportResult:
    kits: list[int] = field(default_factory=list)
    pis: int = 0
    devices: list[str] = field(default_factory=list)
    new_claims: list[NewClaim] = field(default_factory=list)
    seconds_registry: float = 0.0
    seconds_broker: float = 0.0


@dataclass
class _Checked:
    profiles: dict[str, KitProfile]
    deployments: dict[int, DeploymentRow]


def check_import(
    session: Session, plan: ImportPlan, org_id: int, may_use: Callable[[DeploymentRow], bool], now: float
) -> _Checked:
    """Check a well-formed plan against the registry: new kits, usable profiles, free claim codes,
    open deployments of the organisation.

    Raises:
        ImportRefused: with every problem found.
    """
    problems: list[CsvProblem] = []
    codes = [k.inventory_code for k in plan.kits]
    existing = set(
        session.exec(select(KitRow.inventory_code).where(col(KitRow.inventory_code).in_(codes))).all()
    )
    profile_rows = {
        row.id: row
        for row in session.exec(
            select(KitProfileRow).where(col(KitProfileRow.id).in_({k.profile for k in plan.kits}))
        ).all()
    }
    profiles: dict[str, KitProfile] = {}
    claims = [p.claim_code for k in plan.kits for p in k.pis if p.claim_code]
    taken_claims: set[str] = set()
    for start in range(0, len(claims), 500):
        hashes = {hash_secret(c): c for c in claims[start : start + 500]}
        for found in session.exec(
            select(KitPiRow.claim_hash).where(col(KitPiRow.claim_hash).in_(hashes))
        ).all():
            if found is not None:
                taken_claims.add(hashes[found])
    wanted = {p.deployment for k in plan.kits for p in k.pis if p.deployment is not None}
    deployments = {
        d.id: d
        for d in session.exec(select(DeploymentRow).where(col(DeploymentRow.id).in_(wanted))).all()
        if d.id
    }
    for kit in plan.kits:
        if kit.inventory_code in existing:
            problems.append(
                CsvProblem(
                    kit.row,
                    "kit",
                    f"kit {kit.inventory_code} already exists: import only new kits "
                    "(add Pis to an existing kit through its page), or pick another inventory code",
                )
            )
        row = profile_rows.get(kit.profile)
        if row is None or (row.org_id is not None and row.org_id != org_id):
            problems.append(
                CsvProblem(
                    kit.row,
                    "profile",
                    f"kit profile {kit.profile!r} is unknown: see GET /api/v1/kit-profiles",
                )
            )
            continue
        profile = profiles.setdefault(kit.profile, row.profile())
        for pi in kit.pis:
            if pi.pi > profile.pis:
                problems.append(
                    CsvProblem(
                        pi.row,
                        "pi",
                        f"kit profile {kit.profile} has {profile.pis} Pis: number them 1 to {profile.pis}",
                    )
                )
            if pi.claim_code in taken_claims:
                problems.append(
                    CsvProblem(
                        pi.row,
                        "claim_code",
                        "this claim code belongs to a Pi already registered: check the label",
                    )
                )
            if pi.deployment is None:
                continue
            deployment = deployments.get(pi.deployment)
            if deployment is None or not may_use(deployment):
                problems.append(
                    CsvProblem(
                        pi.row,
                        "deployment",
                        f"deployment {pi.deployment} is unknown or not yours to bind to "
                        "(you need the operator role in its organisation)",
                    )
                )
            elif deployment.org_id != org_id:
                problems.append(
                    CsvProblem(
                        pi.row,
                        "deployment",
                        f"deployment {pi.deployment} belongs to another organisation than the kits",
                    )
                )
            elif deployment.kit_id is not None:
                problems.append(
                    CsvProblem(
                        pi.row,
                        "deployment",
                        f"deployment {pi.deployment} is for another kit: pick a deployment without a kit",
                    )
                )
            elif deployment.ends_at is not None and deployment.ends_at <= now:
                problems.append(
                    CsvProblem(
                        pi.row, "deployment", f"deployment {pi.deployment} has ended: pick an open one"
                    )
                )
    if problems:
        raise ImportRefused(sorted(problems, key=lambda p: (p.row, p.column or "")))
    return _Checked(profiles, deployments)


def apply_import(
    session: Session,
    settings: ServerSettings,
    broker: BrokerAdmin | None,
    plan: ImportPlan,
    checked: _Checked,
    org_id: int,
    now: float,
) -> ImportResult:
    """Write the checked plan (the caller commits). Broker accounts are made last, in batches: when
    the broker refuses, the accounts made are deleted and :class:`BrokerAdminError` is raised, so
    the caller rolls back and nothing remains.
    """
    result = ImportResult()
    started = time.perf_counter()
    issued: list[Issued] = []
    sealed_for: list[tuple[KitPiRow, str]] = []
    taken: set[str] = set()
    for plan_kit in plan.kits:
        profile = checked.profiles[plan_kit.profile]
        kit = KitRow(
            org_id=org_id, inventory_code=plan_kit.inventory_code, profile_id=plan_kit.profile, created_at=now
        )
        session.add(kit)
        session.flush()
        assert kit.id is not None
        result.kits.append(kit.id)
        listed = {p.pi: p for p in plan_kit.pis}
        for index in range(1, profile.pis + 1):
            row = listed.get(index)
            code = row.claim_code if row and row.claim_code else new_claim_code()
            if not (row and row.claim_code):
                result.new_claims.append(NewClaim(plan_kit.inventory_code, index, code))
            pi = KitPiRow(kit_id=kit.id, pi_index=index, claim_hash=hash_secret(code))
            session.add(pi)
            result.pis += 1
            if row is None or row.deployment is None:
                continue
            one = issue_device(
                session,
                settings,
                deployment=checked.deployments[row.deployment],
                kit=kit,
                pi_index=index,
                now=now,
                interval_s=row.interval_s,
                profile=profile,
                taken=taken,
            )
            pi.device_id = one.device.id
            issued.append(one)
            sealed_for.append((pi, code))
    for one in issued:
        session.add(one.device)
    session.flush()  # the devices before the rows that refer to them
    for one, (pi, code) in zip(issued, sealed_for, strict=True):
        session.add_all(one.rows)
        pi.pending = seal(
            code,
            {
                "config": one.config.model_dump(mode="json"),
                "topics": one.topics,
                "calibration": one.calibration,
                "token": one.token,
            },
            {"expires_at": now + settings.pending_ttl_s},
        )
    session.flush()
    result.devices = [one.device.id for one in issued]
    result.seconds_registry = time.perf_counter() - started
    if broker is not None and issued:
        started = time.perf_counter()
        broker.create_devices([one.account for one in issued])
        result.seconds_broker = time.perf_counter() - started
    log.info(
        "kits imported",
        extra={"kits": len(result.kits), "pis": result.pis, "devices": len(result.devices)},
    )
    return result
