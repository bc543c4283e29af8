"""outbound messages: notifications queued in the transaction that caused them, sent after commit

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=4000), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.create_index("outbound_due", ["state", "next_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbound_messages_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbound_messages_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbound_messages_org_id"))
        batch_op.drop_index(batch_op.f("ix_outbound_messages_alert_id"))
        batch_op.drop_index("outbound_due")
    op.drop_table("outbound_messages")
