"""The outbox of suppression-changed events: one delivery per (change, endpoint), one attempt row
per HTTP try.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def upgrade() -> None:
    op.create_table(
        "outbox_delivery",
        _id(),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("change", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
    )
    op.create_index("ix_outbox_delivery_due", "outbox_delivery", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_delivery_order", "outbox_delivery", ["endpoint", "address", "id"])
    op.create_table(
        "outbox_attempt",
        _id(),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
    )
    op.create_index("ix_outbox_attempt_delivery_id", "outbox_attempt", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_attempt_delivery_id", "outbox_attempt")
    op.drop_table("outbox_attempt")
    op.drop_index("ix_outbox_delivery_order", "outbox_delivery")
    op.drop_index("ix_outbox_delivery_due", "outbox_delivery")
    op.drop_table("outbox_delivery")
