"""What the demo's fault script needs in the registry, set at every start relative to that start.

- Alert rules of the demo organisation, one per kind the script shows (offline, sensor unhealthy,
  stuck, calibration due, loan overdue), their windows shortened by the speed factor;
- a calibration of Pi 1's bme280/temperature that falls due :data:`CALIBRATION_DUE_S` after start;
- a second kit, OPEN-LAB-LOAN, lent to a school whose loan falls overdue :data:`LOAN_DUE_S` after
  start;
- an operator API token the script recalibrates with (through the API, as a technician would).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from server.calibration_push import queue_deliveries
from server.db import create_registry_engine
from server.tables import (
    AlertRuleRow,
    CalibrationRow,
    KitRow,
    LoanRow,
    OrganisationRow,
)
from suitcase.demo_faults import CALIBRATION_DUE_S, LOAN_DUE_S
from suitcase.demo_history import reissue_token

__all__ = ["LOAN_KIT", "FaultStage", "seed_fault_stage"]

LOAN_KIT = "OPEN-LAB-LOAN"
_BORROWER = "demo-school"
_DAY = 86400.0


@dataclass(frozen=True)
class FaultStage:
    """What the script acts with: the operator token and the demo kit's id."""

    token: str
    kit_id: int


def _rules(speed: float, interval: float) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (kind, params): windows in real seconds, shortened by ``speed``."""
    return {
        "Demo: a Pi is offline": ("offline", {"interval_s": max(interval, 20.0 / speed), "intervals": 3}),
        "Demo: a sensor is missing or failing": ("sensor_unhealthy", {}),
        "Demo: a sensor is stuck": ("stuck", {"window_s": max(interval * 4, 60.0 / speed)}),
        "Demo: a calibration is due": ("calibration_due", {"within_days": 0}),
        "Demo: a loan is overdue": ("loan_overdue", {}),
    }


def seed_fault_stage(registry_url: str, org: str, now: float, *, speed: float, interval: float) -> FaultStage:
    """Set the stage for the fault script (idempotent across starts of the same workdir)."""
    engine = create_registry_engine(registry_url)
    try:
        with Session(engine) as s:
            org_row = s.exec(select(OrganisationRow).where(OrganisationRow.slug == org)).one()
            kit = s.exec(select(KitRow).where(KitRow.inventory_code == "OPEN-LAB-DEMO")).first()
            assert org_row.id is not None and kit is not None and kit.id is not None
            for name, (kind, params) in _rules(speed, interval).items():
                rule = s.exec(
                    select(AlertRuleRow).where(AlertRuleRow.org_id == org_row.id, AlertRuleRow.name == name)
                ).first()
                if rule is None:
                    rule = AlertRuleRow(org_id=org_row.id, name=name, kind=kind, created_at=now)
                rule.params, rule.enabled = params, True
                s.add(rule)
            # The calibration falls due a few minutes into this start: a new version every start.
            last = s.exec(
                select(CalibrationRow.version)
                .where(
                    CalibrationRow.kit_id == kit.id,
                    CalibrationRow.pi_index == 1,
                    CalibrationRow.sensor == "bme280",
                    CalibrationRow.quantity == "temperature",
                )
                .order_by(col(CalibrationRow.version).desc())
            ).first()
            s.add(
                CalibrationRow(
                    kit_id=kit.id,
                    pi_index=1,
                    sensor="bme280",
                    quantity="temperature",
                    offset=-0.3,
                    scale=1.0,
                    calibrated_at=now - 365 * _DAY + CALIBRATION_DUE_S / speed,
                    due_at=now + CALIBRATION_DUE_S / speed,
                    version=(last or 0) + 1,
                    reference="demo: yearly check against the Open Lab's reference thermometer",
                    created_by="suitcase demo",
                )
            )
            s.flush()
            queue_deliveries(s, kit.id, 1, now)  # sent when Pi 1 comes online
            school = s.exec(select(OrganisationRow).where(OrganisationRow.slug == _BORROWER)).first()
            if school is None:
                school = OrganisationRow(
                    slug=_BORROWER, name="Demo school (borrower)", kind="demo", created_at=now
                )
                s.add(school)
                s.flush()
            loan_kit = s.exec(select(KitRow).where(KitRow.inventory_code == LOAN_KIT)).first()
            if loan_kit is None:
                loan_kit = KitRow(
                    org_id=org_row.id,
                    inventory_code=LOAN_KIT,
                    profile_id="starter",
                    status="on_loan",
                    notes="simulated: a suitcase lent to a school",
                    created_at=now,
                )
                s.add(loan_kit)
                s.flush()
            assert school.id is not None and loan_kit.id is not None
            loan = s.exec(
                select(LoanRow).where(LoanRow.kit_id == loan_kit.id, col(LoanRow.returned_at).is_(None))
            ).first()
            if loan is None:
                loan = LoanRow(
                    kit_id=loan_kit.id,
                    owner_org_id=org_row.id,
                    org_id=school.id,
                    borrower="Demo school, 7th grade",
                    starts_at=now - 14 * _DAY,
                    due_at=now,
                    notes="simulated",
                )
            loan.due_at = now + LOAN_DUE_S / speed
            s.add(loan)
            token = reissue_token(s, org_row.id, "demo fault script", now, role="operator", kind="api")
            s.commit()
            return FaultStage(token=token, kit_id=kit.id)
    finally:
        engine.dispose()
