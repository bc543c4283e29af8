"""agent rollouts: releases (wheels in the registry), rollouts, their targets; update opt-outs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("wheel", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agent_releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_releases_version"), ["version"], unique=True)
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ring", sa.Integer(), nullable=False),
        sa.Column("share_percent", sa.Integer(), nullable=False),
        sa.Column("deadline_s", sa.Float(), nullable=False),
        sa.Column("soak_s", sa.Float(), nullable=False),
        sa.Column("ttl_s", sa.Float(), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("ring_started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["release_id"], ["agent_releases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_release_id"), ["release_id"], unique=False)
    op.create_table(
        "rollout_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("ring", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("from_version", sa.String(length=32), nullable=True),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("offered_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("detail", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rollout_id", "device_id"),
    )
    with op.batch_alter_table("rollout_targets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollout_targets_command_id"), ["command_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rollout_targets_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rollout_targets_rollout_id"), ["rollout_id"], unique=False)
    # Plain ALTER TABLE ... ADD COLUMN on SQLite too: in a batch, the SQL-expression default made
    # Alembic copy and drop both tables, which every other table references.
    op.add_column(
        "devices", sa.Column("updates_opt_out", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "organisations", sa.Column("updates_opt_out", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("updates_opt_out")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("updates_opt_out")
    with op.batch_alter_table("rollout_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollout_targets_rollout_id"))
        batch_op.drop_index(batch_op.f("ix_rollout_targets_device_id"))
        batch_op.drop_index(batch_op.f("ix_rollout_targets_command_id"))
    op.drop_table("rollout_targets")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_release_id"))
    op.drop_table("rollouts")
    with op.batch_alter_table("agent_releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_releases_version"))
    op.drop_table("agent_releases")
