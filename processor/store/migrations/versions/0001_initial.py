"""Initial schema: ledger, failed messages, events, suppressions, mailbox state.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=False)


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "processed_message",
        _id(),
        _text("mailbox"),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("uid", sa.BigInteger(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _time("received_at", nullable=True),
        _time("recorded_at"),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_processed_message_uid"),
        sa.UniqueConstraint("content_hash", name="uq_processed_message_hash"),
    )
    op.create_table(
        "failed_message",
        _id(),
        _text("mailbox"),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("uid", sa.BigInteger(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _text("status"),
        sa.Column("error", sa.Text(), nullable=False),
        _time("recorded_at"),
    )
    op.create_index("ix_failed_message_content_hash", "failed_message", ["content_hash"])
    op.create_index("ix_failed_message_recorded_at", "failed_message", ["recorded_at"])
    op.create_table(
        "event",
        _id(),
        sa.Column(
            "message_ref",
            sa.BigInteger(),
            sa.ForeignKey("processed_message.id", ondelete="CASCADE"),
            nullable=True,
        ),
        *(
            _text(name)
            for name in (
                "kind", "address", "domain", "recipient", "scope", "mailbox",
            )
        ),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("uid", sa.BigInteger(), nullable=True),
        *(
            _text(name)
            for name in (
                "original_message_id", "original_from", "dsn_action", "status", "reply_code",
                "smtp_command",
            )
        ),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        _text("diagnostic_type"),
        *(
            _text(name)
            for name in (
                "remote_mta", "reporting_mta", "mta", "feedback_type", "reason", "bounce_type",
                "rule_id", "decision",
            )
        ),
        sa.Column("counted", sa.Boolean(), nullable=False),
        _time("expires_at", nullable=True),
        sa.Column("explanation", sa.Text(), nullable=False),
        _text("actor"),
        _time("received_at"),
        _time("recorded_at"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_event_address_scope_received", "event", ["address", "scope", "received_at"])
    op.create_index(
        "ix_event_message_ref",
        "event",
        ["message_ref"],
        sqlite_where=sa.text("message_ref IS NOT NULL"),
        postgresql_where=sa.text("message_ref IS NOT NULL"),
    )
    op.create_index("ix_event_received_at", "event", ["received_at"])
    op.create_table(
        "suppression",
        _id(),
        *(_text(name) for name in ("address", "domain", "scope", "source", "reason", "bounce_type")),
        _time("first_seen"),
        _time("last_seen"),
        _time("expires_at", nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.UniqueConstraint("address", "scope", name="uq_suppression_address_scope"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_suppression_domain_id", "suppression", ["domain", "id"])
    op.create_index("ix_suppression_expires_at", "suppression", ["expires_at"])
    op.create_index("ix_suppression_first_seen", "suppression", ["first_seen"])
    op.create_table(
        "mailbox_state",
        sa.Column("mailbox", sa.String(), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        _time("updated_at"),
    )


def downgrade() -> None:
    for name in ("mailbox_state", "suppression", "event", "failed_message", "processed_message"):
        op.drop_table(name)
