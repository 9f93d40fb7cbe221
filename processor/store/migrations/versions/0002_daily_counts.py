"""The console's tables: daily counts (kept with the events), the senders' daily sent counts, and
the kept messages (the reports verdicts came from, and quarantined messages).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_count",
        sa.Column("dimension", sa.String(8), primary_key=True),
        sa.Column("category", sa.String(16), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sent_count",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("sender_domain", sa.String(), primary_key=True),
        sa.Column("sent", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "kept_message",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_event_undetermined", "event", ["id"],
                    sqlite_where=sa.text("bounce_type = 'undetermined'"),
                    postgresql_where=sa.text("bounce_type = 'undetermined'"))
    _backfill()


def _backfill() -> None:
    """Counts for the events recorded before this revision, so the charts start complete (the
    same rules as ``processor.store.daily.DailyTally``, streamed: one pass over ``event``)."""
    from collections import Counter

    from processor.store.daily import DEFERRAL, day_of, sender_domain

    conn = op.get_bind()
    counts: Counter[tuple[str, str, str, str]] = Counter()
    rows = conn.execute(sa.text(
        "SELECT kind, bounce_type, received_at, domain, original_from, rule_id FROM event "
        "WHERE kind IN ('failure', 'delay', 'complaint', 'auto_reply', 'delivered')"
    ).execution_options(stream_results=True, yield_per=10_000))
    for kind, bounce_type, received_at, domain, original_from, rule_id in rows:
        day = day_of(received_at) if not isinstance(received_at, str) else received_at[:10]
        sender = sender_domain(original_from)
        for category in (bounce_type, DEFERRAL) if kind == "delay" else (bounce_type,):
            counts[("rcpt", category, day, domain)] += 1
            counts[("sender", category, day, sender)] += 1
            counts[("rule", category, day, rule_id)] += 1
    if counts:
        conn.execute(
            sa.text("INSERT INTO daily_count (dimension, category, day, key, n) VALUES (:d, :c, :day, :k, :n)"),
            [{"d": d, "c": c, "day": day, "k": k, "n": n} for (d, c, day, k), n in counts.items()],
        )


def downgrade() -> None:
    op.drop_index("ix_event_undetermined", table_name="event")
    op.drop_table("kept_message")
    op.drop_table("sent_count")
    op.drop_table("daily_count")
