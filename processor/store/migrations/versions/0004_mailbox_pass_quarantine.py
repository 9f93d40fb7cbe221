"""Each mailbox's last pass (backlog, lease holder, last failure), and quarantined messages
processed again on request (the request and its outcome as audit rows).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_pass",
        sa.Column("mailbox", sa.String(), primary_key=True),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("last_pass_at", sa.DateTime(), nullable=True),
        sa.Column("backlog", sa.BigInteger(), nullable=True),
        sa.Column("handled", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_error_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "quarantine_action",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("failed_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("message_ref", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_quarantine_action_failed_id", "quarantine_action", ["failed_id"])
    op.create_index("ix_failed_message_requested", "failed_message", ["id"],
                    sqlite_where=sa.text("status = 'requested'"),
                    postgresql_where=sa.text("status = 'requested'"))


def downgrade() -> None:
    op.drop_index("ix_failed_message_requested", table_name="failed_message")
    op.drop_index("ix_quarantine_action_failed_id", table_name="quarantine_action")
    op.drop_table("quarantine_action")
    op.drop_table("mailbox_pass")
