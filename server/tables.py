"""The registry's own tables: organisations, people, kits, devices, deployments, alerts, audit.

Times are UTC epoch seconds (floats), as on the wire. Secrets (passwords, tokens, claim and
enrollment codes) are stored only as hashes (``server.security``). The catalogue's tables are in
``server.models``; both share ``SQLModel.metadata``, which Alembic (``server/migrations``) follows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "ROLES",
    "AgentReleaseRow",
    "AlertRow",
    "AlertRuleRow",
    "ApiTokenRow",
    "AssessmentRow",
    "AuditRow",
    "CalibrationRow",
    "DeploymentDeviceRow",
    "DeploymentRow",
    "DeviceCommandRow",
    "DeviceConfigRow",
    "DeviceRow",
    "EnrollmentCodeRow",
    "KitPiRow",
    "KitRow",
    "LeaseRow",
    "LoanRow",
    "MembershipRow",
    "OrganisationRow",
    "OutboundMessageRow",
    "RateEventRow",
    "RolloutRow",
    "RolloutTargetRow",
    "SessionRow",
    "UserRow",
]

# Roles of a member of an organisation, weakest first.
ROLES: tuple[str, ...] = ("viewer", "operator", "admin")


def _json(default: Any = None, nullable: bool = False) -> Any:
    return Field(
        default_factory=lambda: default() if callable(default) else default,
        sa_column=Column(JSON, nullable=nullable),
    )


class OrganisationRow(SQLModel, table=True):
    """A municipality, a region or the GovTech centre; ``slug`` is the ``{org}`` of topics."""

    __tablename__ = "organisations"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    kind: str = Field(default="municipality", max_length=32)
    created_at: float
    # The organisation takes no agent updates (server.rollouts leaves its devices out).
    updates_opt_out: bool = False


class UserRow(SQLModel, table=True):
    """A person who logs in; ``is_global_admin`` sees and changes every organisation."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    password_hash: str
    is_global_admin: bool = False
    active: bool = True
    created_at: float


class MembershipRow(SQLModel, table=True):
    """A user's role in one organisation."""

    __tablename__ = "memberships"

    user_id: int = Field(foreign_key="users.id", primary_key=True)
    org_id: int = Field(foreign_key="organisations.id", primary_key=True)
    role: str = Field(max_length=16)


class SessionRow(SQLModel, table=True):
    """A browser login: the cookie holds the id, the table its hash and the CSRF token."""

    __tablename__ = "sessions"

    id_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf: str = Field(max_length=64)
    created_at: float
    expires_at: float


class ApiTokenRow(SQLModel, table=True):
    """An API token: scoped to an organisation and a role; kiosk tokens also to deployments.

    ``kind`` is ``api`` (made by a person), ``kiosk`` (read-only, chosen deployments) or
    ``device`` (issued to an enrolled device).
    """

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    role: str = Field(max_length=16)
    kind: str = Field(default="api", max_length=16)
    user_id: int | None = Field(default=None, foreign_key="users.id")
    device_id: str | None = Field(default=None, max_length=64, index=True)
    deployment_ids: list[int] = _json(list)
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None


class KitRow(SQLModel, table=True):
    """A physical suitcase."""

    __tablename__ = "kits"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    inventory_code: str = Field(max_length=64, unique=True, index=True)
    profile_id: str = Field(max_length=64)
    condition: str = Field(default="good", max_length=16)
    status: str = Field(default="in_stock", max_length=16, index=True)
    contents_check: dict[str, Any] = _json(dict)
    contents_checked_at: float | None = None
    notes: str = ""
    created_at: float


class KitPiRow(SQLModel, table=True):
    """One Raspberry Pi of a kit, with its long-lived claim code (hashed) and bound device."""

    __tablename__ = "kit_pis"
    __table_args__ = (UniqueConstraint("kit_id", "pi_index"),)

    id: int | None = Field(default=None, primary_key=True)
    kit_id: int = Field(foreign_key="kits.id", index=True)
    pi_index: int
    claim_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    claim_revoked_at: float | None = None
    device_id: str | None = Field(default=None, max_length=64)
    # The device's credentials between the staff member's bind and the agent's next poll;
    # cleared once delivered.
    pending: dict[str, Any] | None = _json(None, nullable=True)


class LoanRow(SQLModel, table=True):
    """A kit lent to an organisation."""

    __tablename__ = "loans"

    id: int | None = Field(default=None, primary_key=True)
    kit_id: int = Field(foreign_key="kits.id", index=True)
    owner_org_id: int = Field(foreign_key="organisations.id", index=True)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    borrower: str = Field(max_length=200)
    starts_at: float
    due_at: float
    returned_at: float | None = None
    notes: str = ""


class CalibrationRow(SQLModel, table=True):
    """One version of the calibration of a sensor's quantity on one Pi of a kit (never updated)."""

    __tablename__ = "calibrations"
    __table_args__ = (Index("calibration_key", "kit_id", "pi_index", "sensor", "quantity", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    kit_id: int = Field(foreign_key="kits.id")
    pi_index: int
    sensor: str = Field(max_length=32)
    quantity: str = Field(max_length=32)
    offset: float = 0.0
    scale: float = 1.0
    calibrated_at: float
    due_at: float | None = None
    version: int
    reference: str = ""
    created_by: str = ""


class DeviceRow(SQLModel, table=True):
    """An enrolled edge agent; its state comes from the retained ``status`` and ``meta`` topics."""

    __tablename__ = "devices"

    id: str = Field(primary_key=True, max_length=64)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    kit_id: int | None = Field(default=None, foreign_key="kits.id", index=True)
    pi_index: int | None = None
    mqtt_username: str | None = Field(default=None, max_length=128)
    registered_at: float
    revoked_at: float | None = None
    online: bool = False
    status_since: float | None = None
    last_seen: float | None = None
    agent_version: str | None = Field(default=None, max_length=32)
    kit_profile: str | None = Field(default=None, max_length=64)
    clock_synced: bool | None = None
    uptime_s: float | None = None
    backlog: int | None = None
    oldest_pending: float | None = None
    sensors: list[dict[str, Any]] = _json(list)
    missing: list[str] = _json(list)
    unexpected: list[str] = _json(list)
    meta_at: float | None = None
    # The device config version the agent reports in force (``meta``), and its diagnostics (disk,
    # outbox size, storage writes per hour, Wi-Fi signal) as the last ``meta`` gave them.
    config_version: int | None = None
    diagnostics: dict[str, Any] = _json(dict)
    # This device takes no agent updates (server.rollouts leaves it out).
    updates_opt_out: bool = False


class DeviceCommandRow(SQLModel, table=True):
    """A command to one device (``server.device_commands``), its state and the device's reply.

    ``state``: queued (waiting: the device is offline, or no broker), sent, answered (the device
    replied ok), failed (it refused, or the server could not send it: ``error`` says why), expired
    (not answered before ``expires_at``). ``lease_owner``/``lease_until`` let one server replica
    dispatch it while the others keep off. Kept as the device's history.
    """

    __tablename__ = "device_commands"
    __table_args__ = (Index("device_commands_due", "state", "device_id"),)

    id: int | None = Field(default=None, primary_key=True)
    command_id: str = Field(max_length=64, unique=True, index=True)
    device_id: str = Field(foreign_key="devices.id", max_length=64, index=True)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    name: str = Field(max_length=32)
    args: dict[str, Any] = _json(dict)
    state: str = Field(default="queued", max_length=16)
    created_at: float
    created_by: str = Field(default="", max_length=254)
    expires_at: float
    sent_at: float | None = None
    answered_at: float | None = None
    reply: Any = _json(None, nullable=True)
    error: str | None = Field(default=None, max_length=2000)
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: float | None = None


class DeviceConfigRow(SQLModel, table=True):
    """One version of a device's configuration (never updated; ``server.device_config``).

    ``body`` holds one entry per section (``sampling``, ``calibration``, ...): each section is
    validated by its model in ``server.device_config.SECTIONS``.
    """

    __tablename__ = "device_configs"
    __table_args__ = (UniqueConstraint("device_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(foreign_key="devices.id", max_length=64, index=True)
    version: int
    body: dict[str, Any] = _json(dict)
    created_at: float
    created_by: str = Field(default="", max_length=254)
    note: str = Field(default="", max_length=500)


class DeploymentRow(SQLModel, table=True):
    """A kit (and its devices) placed somewhere for a use-case."""

    __tablename__ = "deployments"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    kit_id: int | None = Field(default=None, foreign_key="kits.id", index=True)
    name: str = Field(max_length=200)
    use_case_id: str | None = Field(default=None, max_length=64, index=True)
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    private_address: bool = False
    environment: str = Field(default="indoor", max_length=16)
    height_m: float | None = None
    photo_url: str = ""
    starts_at: float
    ends_at: float | None = None
    public: bool = False
    notes: str = ""
    created_at: float


class DeploymentDeviceRow(SQLModel, table=True):
    """When a device belonged to a deployment: readings are resolved through this history."""

    __tablename__ = "deployment_devices"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployments.id", index=True)
    device_id: str = Field(foreign_key="devices.id", index=True, max_length=64)
    from_t: float
    to_t: float | None = None


class EnrollmentCodeRow(SQLModel, table=True):
    """A single-use, expiring code for ``suitcase edge enroll``."""

    __tablename__ = "enrollment_codes"

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True, index=True)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    deployment_id: int = Field(foreign_key="deployments.id")
    pi_index: int | None = None
    created_at: float
    expires_at: float
    used_at: float | None = None
    device_id: str | None = Field(default=None, max_length=64)
    created_by: str = ""


class AssessmentRow(SQLModel, table=True):
    """A deployment's pilot assessment (Tallinn tool) and the free-text parts of its report."""

    __tablename__ = "assessments"

    deployment_id: int = Field(foreign_key="deployments.id", primary_key=True)
    benefits: dict[str, Any] = _json(dict)
    risks: dict[str, Any] = _json(dict)
    expert_score_pct: float | None = None
    report: dict[str, Any] = _json(dict)
    updated_at: float
    updated_by: str = ""


class AlertRuleRow(SQLModel, table=True):
    """An alert rule of an organisation, optionally limited to one deployment."""

    __tablename__ = "alert_rules"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    deployment_id: int | None = Field(default=None, foreign_key="deployments.id")
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    params: dict[str, Any] = _json(dict)
    webhooks: list[str] = _json(list)
    emails: list[str] = _json(list)
    enabled: bool = True
    created_at: float


class AlertRow(SQLModel, table=True):
    """One occurrence of a rule for one subject: fires once, resolves once."""

    __tablename__ = "alerts"
    __table_args__ = (Index("alert_open", "rule_id", "subject", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    rule_id: int = Field(foreign_key="alert_rules.id", index=True)
    org_id: int = Field(foreign_key="organisations.id", index=True)
    subject: str = Field(max_length=200)
    state: str = Field(default="firing", max_length=16)
    message: str = ""
    value: float | None = None
    fired_at: float
    resolved_at: float | None = None
    notifications: list[dict[str, Any]] = _json(list)


class OutboundMessageRow(SQLModel, table=True):
    """A message for the outside (webhook, e-mail, later data targets), queued in the transaction
    that caused it and sent after its commit, with retries (``server.outbox``)."""

    __tablename__ = "outbound_messages"
    __table_args__ = (Index("outbound_due", "state", "next_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    target: str = Field(max_length=4000)
    payload: dict[str, Any] = _json(dict)
    org_id: int | None = Field(default=None, index=True)
    alert_id: int | None = Field(default=None, index=True)
    event: str = Field(default="", max_length=16)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_at: float
    lease_until: float | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: float
    done_at: float | None = None


class LeaseRow(SQLModel, table=True):
    """A named lease shared by the server replicas: one holder until ``expires_at`` (``server.shared``).

    The alert round holds ``alerts``, so rounds never overlap across replicas.
    """

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: float


class RateEventRow(SQLModel, table=True):
    """One counted event (a failed guess, an export started) of a client, shared by the replicas.

    ``key`` is the SHA-256 of the client's key (address, account): no address is stored. Rows
    older than their window are deleted (``server.shared``).
    """

    __tablename__ = "rate_events"
    __table_args__ = (Index("rate_events_key", "kind", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    key: str = Field(max_length=64)
    at: float = Field(index=True)


class AuditRow(SQLModel, table=True):
    """Who changed what, when."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(index=True)
    actor_user_id: int | None = Field(default=None, index=True)
    actor: str = Field(max_length=254)
    org_id: int | None = Field(default=None, index=True)
    action: str = Field(max_length=64)
    entity: str = Field(max_length=64)
    entity_id: str = Field(max_length=64)
    detail: dict[str, Any] = _json(dict)


class AgentReleaseRow(SQLModel, table=True):
    """An agent version the server offers: its wheel, kept in the registry (every replica serves it)."""

    __tablename__ = "agent_releases"

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=32, unique=True, index=True)
    filename: str = Field(max_length=128)
    sha256: str = Field(max_length=64)
    size: int
    wheel: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: float
    created_by: str = Field(default="", max_length=254)


class RolloutRow(SQLModel, table=True):
    """A staged rollout of a release: ring 0 (canaries), 1 (a share), 2 (all the others).

    ``state``: running, stopped (by itself when a device of the current ring failed, or by a
    person: ``reason`` says why) or done.
    """

    __tablename__ = "rollouts"

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="agent_releases.id", index=True)
    state: str = Field(default="running", max_length=16)
    ring: int = 0
    share_percent: int = 25
    deadline_s: float = 120.0
    soak_s: float = 0.0
    ttl_s: float = 86_400.0
    base_url: str = Field(max_length=500)
    reason: str | None = Field(default=None, max_length=2000)
    created_at: float
    created_by: str = Field(default="", max_length=254)
    ring_started_at: float | None = None
    finished_at: float | None = None


class RolloutTargetRow(SQLModel, table=True):
    """One device of a rollout: its ring, and where it is (waiting, offered, updated, failed, opted_out)."""

    __tablename__ = "rollout_targets"
    __table_args__ = (UniqueConstraint("rollout_id", "device_id"),)

    id: int | None = Field(default=None, primary_key=True)
    rollout_id: int = Field(foreign_key="rollouts.id", index=True)
    device_id: str = Field(foreign_key="devices.id", max_length=64, index=True)
    ring: int
    state: str = Field(default="waiting", max_length=16)
    from_version: str | None = Field(default=None, max_length=32)
    command_id: str | None = Field(default=None, max_length=64, index=True)
    offered_at: float | None = None
    finished_at: float | None = None
    detail: str | None = Field(default=None, max_length=2000)
