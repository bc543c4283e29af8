"""derived configs: versions of a deployment's derived quantities, applied on read

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "derived_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("derivations", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deployment_id", "version"),
    )
    with op.batch_alter_table("derived_configs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_derived_configs_deployment_id"), ["deployment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("derived_configs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_derived_configs_deployment_id"))
    op.drop_table("derived_configs")
