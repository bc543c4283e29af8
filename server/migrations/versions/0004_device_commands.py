"""device commands with state and lease, versioned device configs, the applied version and diagnostics

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 23:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_commands", schema=None) as batch_op:
        batch_op.create_index("device_commands_due", ["state", "device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_device_commands_command_id"), ["command_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_device_commands_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_device_commands_org_id"), ["org_id"], unique=False)
    op.create_table(
        "device_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "version"),
    )
    with op.batch_alter_table("device_configs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_configs_device_id"), ["device_id"], unique=False)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("diagnostics", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("diagnostics")
        batch_op.drop_column("config_version")
    with op.batch_alter_table("device_configs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_configs_device_id"))
    op.drop_table("device_configs")
    with op.batch_alter_table("device_commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_commands_org_id"))
        batch_op.drop_index(batch_op.f("ix_device_commands_device_id"))
        batch_op.drop_index(batch_op.f("ix_device_commands_command_id"))
        batch_op.drop_index("device_commands_due")
    op.drop_table("device_commands")
