"""The store's tables (SQLModel). The schema itself is owned by the Alembic migrations in
``processor/store/migrations``; a test checks that these models and the migrations agree.

- ``processed_message``: the idempotency ledger. One row per message that was counted, unique by
  (mailbox, uidvalidity, uid) and by content hash: a message seen before by either key is a
  duplicate and counts nothing.
- ``failed_message``: messages that were quarantined or failed, with the error (not a ledger
  entry: the same message may be processed once the problem is fixed).
- ``event``: every classified event and every change to the list (manual add/remove, import,
  purge, reprocess), kept for audit and for the policy's history.
- ``suppression``: one row per (address, scope); an entry whose ``expires_at`` is past does not
  count (checked at query time) and is deleted by ``purge_expired``.
- ``mailbox_state``: UIDVALIDITY and the last UID handled, per mailbox.

Times are stored as naive UTC and returned as aware UTC datetimes (``UTCDateTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, naive UTC in the database, aware UTC out."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _id_column() -> Any:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def _time(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class ProcessedMessage(SQLModel, table=True):
    __tablename__: ClassVar[str] = "processed_message"
    __table_args__ = (
        sa.UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_processed_message_uid"),
        sa.UniqueConstraint("content_hash", name="uq_processed_message_hash"),
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    mailbox: str = Field()
    uidvalidity: int | None = Field(default=None, sa_type=sa.BigInteger)
    uid: int | None = Field(default=None, sa_type=sa.BigInteger)
    content_hash: str = Field(max_length=64)
    received_at: datetime | None = _time(nullable=True)
    recorded_at: datetime = _time()
    event_count: int = 0


class FailedMessage(SQLModel, table=True):
    __tablename__: ClassVar[str] = "failed_message"
    __table_args__ = (
        sa.Index(  # the daemon's look for messages an operator asked to process again
            "ix_failed_message_requested",
            "id",
            sqlite_where=sa.text("status = 'requested'"),
            postgresql_where=sa.text("status = 'requested'"),
        ),
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    mailbox: str = Field()
    uidvalidity: int | None = Field(default=None, sa_type=sa.BigInteger)
    uid: int | None = Field(default=None, sa_type=sa.BigInteger)
    content_hash: str = Field(max_length=64, index=True)
    status: str = Field()
    """quarantined; requested (to be processed again); reprocessed (processor.store.quarantine)."""
    error: str = Field(sa_type=sa.Text)
    recorded_at: datetime = _time(index=True)


class EventRow(SQLModel, table=True):
    __tablename__: ClassVar[str] = "event"
    __table_args__ = (
        sa.Index("ix_event_address_scope_received", "address", "scope", "received_at"),
        sa.Index(
            "ix_event_message_ref",
            "message_ref",
            sqlite_where=sa.text("message_ref IS NOT NULL"),
            postgresql_where=sa.text("message_ref IS NOT NULL"),
        ),
        sa.Index(  # the console's review page: the newest events no rule decided
            "ix_event_undetermined",
            "id",
            sqlite_where=sa.text("bounce_type = 'undetermined'"),
            postgresql_where=sa.text("bounce_type = 'undetermined'"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    message_ref: int | None = Field(
        default=None,
        sa_type=sa.BigInteger,
        foreign_key="processed_message.id",
        ondelete="CASCADE",
    )
    kind: str = Field()
    """An EventKind value for reports; manual_add, manual_remove, import, expired or reprocess."""
    address: str = Field()
    """The normalised recipient ("" when the report's recipient is not a valid address)."""
    domain: str = Field(default="")
    """The domain of ``address`` (for statistics)."""
    recipient: str = Field(default="")
    """The recipient as the report gave it."""
    scope: str = Field(default="global")
    mailbox: str = Field(default="")
    uidvalidity: int | None = Field(default=None, sa_type=sa.BigInteger)
    uid: int | None = Field(default=None, sa_type=sa.BigInteger)
    original_message_id: str = Field(default="")
    original_from: str = Field(default="")
    dsn_action: str = Field(default="")
    status: str = Field(default="")
    reply_code: str = Field(default="")
    smtp_command: str = Field(default="")
    diagnostic: str = Field(default="", sa_type=sa.Text)
    diagnostic_type: str = Field(default="")
    remote_mta: str = Field(default="")
    reporting_mta: str = Field(default="")
    mta: str = Field(default="")
    feedback_type: str = Field(default="")
    reason: str = Field(default="")
    bounce_type: str = Field(default="")
    rule_id: str = Field(default="")
    decision: str = Field(default="")
    """The action taken: suppress, count, ignore, add, remove, expire."""
    counted: bool = False
    """Counts as a soft failure towards the soft threshold."""
    expires_at: datetime | None = _time(nullable=True)
    explanation: str = Field(default="", sa_type=sa.Text)
    actor: str = Field(default="")
    """Who made a manual change (cli, api:<token name>, import:<file>)."""
    received_at: datetime = _time(index=True)
    recorded_at: datetime = _time()


class Suppression(SQLModel, table=True):
    __tablename__: ClassVar[str] = "suppression"
    __table_args__ = (
        sa.UniqueConstraint("address", "scope", name="uq_suppression_address_scope"),
        sa.Index("ix_suppression_domain_id", "domain", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    address: str = Field()
    domain: str = Field()
    scope: str = Field(default="global")
    source: str = Field()
    reason: str = Field(default="")
    bounce_type: str = Field(default="")
    first_seen: datetime = _time(index=True)
    last_seen: datetime = _time()
    expires_at: datetime | None = _time(nullable=True, index=True)
    event_count: int = 1
    last_event_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    note: str = Field(default="", sa_type=sa.Text)


class MailboxState(SQLModel, table=True):
    __tablename__: ClassVar[str] = "mailbox_state"

    mailbox: str = Field(primary_key=True)
    uidvalidity: int = Field(sa_type=sa.BigInteger)
    last_uid: int = Field(default=0, sa_type=sa.BigInteger)
    updated_at: datetime = _time()


class OutboxDelivery(SQLModel, table=True):
    """One suppression change to announce to one endpoint (processor.store.outbox). Written in the
    change's transaction; the body is stored once so that every retry sends the same bytes."""

    __tablename__: ClassVar[str] = "outbox_delivery"
    __table_args__ = (
        sa.Index("ix_outbox_delivery_due", "status", "next_attempt_at"),
        sa.Index("ix_outbox_delivery_order", "endpoint", "address", "id"),
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    endpoint: str = Field()
    address: str = Field()
    change: str = Field()
    body: str = Field(sa_type=sa.Text)
    status: str = Field(default="pending")
    """pending, delivered or dead."""
    attempts: int = 0
    next_attempt_at: datetime = _time()
    created_at: datetime = _time()
    delivered_at: datetime | None = _time(nullable=True)
    last_error: str = Field(default="", sa_type=sa.Text)


class OutboxAttempt(SQLModel, table=True):
    """One HTTP try of a delivery (append-only)."""

    __tablename__: ClassVar[str] = "outbox_attempt"

    id: int | None = Field(default=None, sa_column=_id_column())
    delivery_id: int = Field(sa_type=sa.BigInteger, index=True)
    attempted_at: datetime = _time()
    status_code: int | None = Field(default=None)
    duration_ms: int = 0
    error: str = Field(default="", sa_type=sa.Text)


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model (the store's queries are Core statements, for speed)."""
    result = model.__table__  # type: ignore[attr-defined]
    assert isinstance(result, sa.Table)
    return result


METADATA = SQLModel.metadata
processed_message = table(ProcessedMessage)
failed_message = table(FailedMessage)
event = table(EventRow)
suppression = table(Suppression)
mailbox_state = table(MailboxState)
outbox_delivery = table(OutboxDelivery)
outbox_attempt = table(OutboxAttempt)
