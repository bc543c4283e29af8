"""Alert rules and alerts (fire once, resolve once)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import col, select

from kits.quantities import QUANTITIES
from server.alerts import evaluate, notify_due
from server.api.auth import AuthDep, Principal, not_found
from server.api.common import Page, PagingDep, audit_change, page, resolve_org, scoped
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.security import redact_url
from server.tables import AlertRow, AlertRuleRow, DeploymentRow

__all__ = ["AlertRuleCreate", "AlertRulePublic", "AlertRuleUpdate", "router"]

router = APIRouter(tags=["alerts"])

Kind = Literal["offline", "sensor_unhealthy", "stuck", "threshold", "calibration_due", "loan_overdue"]
Url = Annotated[str, Field(pattern=r"^https?://\S{1,2000}$")]
Email = Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$")]


class RuleParams(BaseModel):
    """Parameters by kind: offline (interval_s, intervals), stuck (window_s, quantity), threshold
    (quantity, op, value, window_s, aggregate), calibration_due (within_days)."""

    model_config = ConfigDict(extra="forbid")

    interval_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    intervals: Annotated[float, Field(gt=0, le=1000)] | None = None
    window_s: Annotated[float, Field(gt=0, le=31 * 86400)] | None = None
    quantity: str | None = None
    op: Literal[">", "<"] | None = None
    value: Annotated[float, Field(ge=-1e9, le=1e9)] | None = None
    aggregate: Literal["mean", "min", "max"] | None = None
    within_days: Annotated[float, Field(ge=0, le=3660)] | None = None

    @model_validator(mode="after")
    def _quantity(self) -> RuleParams:
        if self.quantity is not None and self.quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {self.quantity!r}: use one of {', '.join(QUANTITIES)}")
        return self


class AlertRuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_id: int | None = None
    deployment_id: int | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Kind
    params: RuleParams = Field(default_factory=RuleParams)
    webhooks: list[Url] = Field(default_factory=list, max_length=10)
    emails: list[Email] = Field(default_factory=list, max_length=20)
    enabled: bool = True

    @model_validator(mode="after")
    def _threshold(self) -> AlertRuleCreate:
        if self.kind == "threshold" and (self.params.quantity is None or self.params.value is None):
            raise ValueError("a threshold rule needs params.quantity and params.value (e.g. co2, 1400)")
        return self


class AlertRuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    webhooks: list[Url] | None = Field(default=None, max_length=10)
    emails: list[Email] | None = Field(default=None, max_length=20)
    enabled: bool | None = None


class AlertRulePublic(BaseModel):
    id: int
    org_id: int
    deployment_id: int | None
    name: str
    kind: str
    params: dict[str, Any]
    webhooks: list[str]
    emails: list[str]
    enabled: bool
    created_at: float


class AlertPublic(BaseModel):
    id: int
    rule_id: int
    org_id: int
    subject: str
    state: str
    message: str
    value: float | None
    fired_at: float
    resolved_at: float | None
    notifications: list[dict[str, Any]]


class EvaluationPublic(BaseModel):
    fired: list[int]
    resolved: list[int]


def _mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _rule_public(row: AlertRuleRow, principal: Principal) -> AlertRulePublic:
    """The rule; a viewer sees that it notifies, not where (a webhook URL carries its secret)."""
    public = AlertRulePublic.model_validate(row.model_dump())
    if not principal.can(row.org_id, "operator"):
        public.webhooks = [redact_url(u) for u in public.webhooks]
        public.emails = [_mask_email(e) for e in public.emails]
    return public


def _alert_public(row: AlertRow, principal: Principal) -> AlertPublic:
    public = AlertPublic.model_validate(row.model_dump())
    if not principal.can(row.org_id, "operator"):
        public.notifications = [
            {**n, "target": redact_url(str(n["target"]))} if "://" in str(n.get("target", "")) else n
            for n in public.notifications
        ]
    return public


@router.post("/alert-rules", status_code=201)
def create_rule(
    body: AlertRuleCreate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> AlertRulePublic:
    """Add an alert rule for an organisation or one of its deployments (operators)."""
    org = resolve_org(session, principal, body.org_id, "operator")
    if body.deployment_id is not None:
        dep = session.get(DeploymentRow, body.deployment_id)
        if dep is None or dep.org_id != org.id:
            raise not_found("deployment", body.deployment_id)
    now = clock()
    row = AlertRuleRow(
        org_id=org.id or 0,
        deployment_id=body.deployment_id,
        name=body.name,
        kind=body.kind,
        params=body.params.model_dump(exclude_none=True),
        webhooks=body.webhooks,
        emails=body.emails,
        enabled=body.enabled,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit_change(session, principal, now, "create", "alert_rule", row.id, row.org_id, kind=row.kind)
    session.commit()
    return _rule_public(row, principal)


@router.get("/alert-rules")
def list_rules(principal: AuthDep, session: SessionDep, paging: PagingDep) -> Page[AlertRulePublic]:
    """Return the alert rules of the caller's organisations."""
    rows, total = page(
        session, scoped(select(AlertRuleRow), AlertRuleRow.org_id, principal), paging, col(AlertRuleRow.id)
    )
    return Page(data=[_rule_public(r, principal) for r in rows], count=total, **paging.model_dump())


def _rule(session: Any, principal: Any, rule_id: int, role: str) -> AlertRuleRow:
    row = session.get(AlertRuleRow, rule_id)
    if row is None:
        raise not_found("alert rule", rule_id)
    principal.require(row.org_id, role, "alert rule", rule_id)
    return row  # type: ignore[no-any-return]


@router.get("/alert-rules/{rule_id}")
def read_rule(rule_id: int, principal: AuthDep, session: SessionDep) -> AlertRulePublic:
    """Return one alert rule."""
    return _rule_public(_rule(session, principal, rule_id, "viewer"), principal)


@router.patch("/alert-rules/{rule_id}")
def update_rule(
    rule_id: int, body: AlertRuleUpdate, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> AlertRulePublic:
    """Change a rule's name, targets or whether it is enabled (operators)."""
    row = _rule(session, principal, rule_id, "operator")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    for key, value in changes.items():
        setattr(row, key, value)
    session.add(row)
    audit_change(session, principal, clock(), "update", "alert_rule", rule_id, row.org_id, **changes)
    session.commit()
    return _rule_public(row, principal)


@router.delete("/alert-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep) -> None:
    """Delete a rule and its alerts (operators)."""
    row = _rule(session, principal, rule_id, "operator")
    for alert in session.exec(select(AlertRow).where(AlertRow.rule_id == rule_id)).all():
        session.delete(alert)
    session.delete(row)
    audit_change(session, principal, clock(), "delete", "alert_rule", rule_id, row.org_id)
    session.commit()


@router.get("/alerts")
def list_alerts(
    principal: AuthDep,
    session: SessionDep,
    paging: PagingDep,
    state: Literal["firing", "resolved"] | None = None,
    rule_id: int | None = None,
) -> Page[AlertPublic]:
    """Return alerts of the caller's organisations, newest first."""
    query = scoped(select(AlertRow), AlertRow.org_id, principal)
    if state:
        query = query.where(AlertRow.state == state)
    if rule_id is not None:
        query = query.where(AlertRow.rule_id == rule_id)
    rows, total = page(session, query, paging, col(AlertRow.id).desc())
    return Page(data=[_alert_public(r, principal) for r in rows], count=total, **paging.model_dump())


_EVALUATE_WAIT_S = 20.0  # a round of another replica is usually over well before


@router.post("/alerts/evaluate")
def evaluate_now(principal: AuthDep, resources: ResourcesDep) -> EvaluationPublic:
    """Evaluate the rules of the caller's organisations now (operators), instead of waiting."""
    orgs = principal.org_ids("operator")
    if orgs is not None and not orgs:
        raise HTTPException(status_code=403, detail="evaluating alerts needs the operator role")
    # Commits the alerts and their queued notifications; waits for a round of another replica.
    result = evaluate(resources, orgs, wait_s=_EVALUATE_WAIT_S)
    if result.skipped:
        raise HTTPException(
            status_code=503,
            detail="another server replica is evaluating the alert rules right now: try again in a minute",
            headers={"Retry-After": "60"},
        )
    notify_due(resources, orgs)
    return EvaluationPublic(fired=result.fired, resolved=result.resolved)
