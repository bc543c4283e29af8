"""calibration deliveries: the config commands carrying calibration to devices, and their replies

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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


def downgrade() -> None:
    with op.batch_alter_table("calibration_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calibration_deliveries_kit_id"))
        batch_op.drop_index(batch_op.f("ix_calibration_deliveries_device_id"))
        batch_op.drop_index(batch_op.f("ix_calibration_deliveries_command_id"))
    op.drop_table("calibration_deliveries")
