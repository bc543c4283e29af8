"""calibration deliveries become config commands: one mechanism (device_commands) for every config

The deliveries made so far are kept as ``config`` commands in the devices' command histories
(pending -> queued, sent, ok -> answered, error -> failed, superseded -> expired), carrying the
calibration they sent; then the table goes.

A delivery whose device is no longer in the registry (the server never deletes one, but an
operator may have, by hand) cannot become a command: a command belongs to a device. It is still
the record of which calibration that device was sent, and whether it took it, which the device's
readings, still in the store, were measured with. So it is kept in the audit log (action
``calibration_delivery``, entity the device, the delivery's columns in ``detail``, the kit's
organisation), not dropped. A downgrade leaves both where they are (commands and audit rows).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 00:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the audit log keeps of a delivery whose device is gone (every column but its row id).
_KEPT = ("command_id", "device_id", "kit_id", "pi_index", "version", "calibration", "state", "created_at",
         "sent_at", "replied_at", "error")  # fmt: skip
_STATES = {"pending": "queued", "sent": "sent", "ok": "answered", "error": "failed", "superseded": "expired"}


def upgrade() -> None:
    bind = op.get_bind()
    meta = sa.MetaData()
    deliveries = sa.Table("calibration_deliveries", meta, autoload_with=bind)
    devices = sa.Table("devices", meta, autoload_with=bind)
    commands = sa.Table("device_commands", meta, autoload_with=bind)
    kits = sa.Table("kits", meta, autoload_with=bind)
    audit = sa.Table("audit_log", meta, autoload_with=bind)
    rows = bind.execute(
        sa.select(deliveries, devices.c.org_id.label("device_org"), kits.c.org_id.label("kit_org"))
        .outerjoin(devices, devices.c.id == deliveries.c.device_id)
        .outerjoin(kits, kits.c.id == deliveries.c.kit_id)
    ).all()
    for row in rows:
        if row.device_org is None:  # the device is gone: the audit log keeps its delivery
            bind.execute(
                audit.insert().values(
                    at=row.created_at,
                    actor_user_id=None,
                    actor="migration 0007",
                    org_id=row.kit_org,
                    action="calibration_delivery",
                    entity="device",
                    entity_id=row.device_id,
                    detail={column: getattr(row, column) for column in _KEPT},
                )
            )
            continue
        bind.execute(
            commands.insert().values(
                command_id=row.command_id,
                device_id=row.device_id,
                org_id=row.device_org,
                name="config",
                args={"calibration": row.calibration},
                state=_STATES.get(row.state, "failed"),
                created_at=row.created_at,
                created_by="",
                expires_at=row.created_at + 86400.0,
                sent_at=row.sent_at,
                answered_at=row.replied_at,
                reply=None,
                error=row.error,
                attempts=1 if row.sent_at is not None else 0,
            )
        )
    with op.batch_alter_table("calibration_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calibration_deliveries_kit_id"))
        batch_op.drop_index(batch_op.f("ix_calibration_deliveries_device_id"))
        batch_op.drop_index(batch_op.f("ix_calibration_deliveries_command_id"))
    op.drop_table("calibration_deliveries")


def downgrade() -> None:
    op.create_table(
        "calibration_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("pi_index", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("calibration", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("replied_at", sa.Float(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("calibration_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calibration_deliveries_command_id"), ["command_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_calibration_deliveries_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_calibration_deliveries_kit_id"), ["kit_id"], unique=False)
