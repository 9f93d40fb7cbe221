"""Quarantined messages processed again: an operator asks (the console), the daemon does it.

The API and the console never parse mail. "Process again" only marks the quarantined message's
``failed_message`` row ``requested`` and writes an audit row (``quarantine_action``: who, why,
when); the daemon that holds the message's mailbox picks requested rows up
(``processor.daemon.requeue``), runs the kept copy through the normal pipeline (parse, classify,
policy, store) and records the outcome: ``reprocessed`` (out of the quarantine, its ledger row
named) or back to ``quarantined`` with the new error. Each step is a row of ``quarantine_action``.

A quarantined message is kept whole (up to ``QUARANTINE_KEEP_KIB``) whenever messages are kept at
all (``database.keep_report_kib`` > 0), so that it can be processed again; one kept cut, or not
kept, cannot be, and the request is refused saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from processor.store import models as m
from processor.store._db import Database, as_utc, utcnow
from processor.store.kept import kept_message
from processor.store.models import UTCDateTime
from processor.store.types import QueryError

__all__ = [
    "QUARANTINED",
    "QUARANTINE_KEEP_KIB",
    "REPROCESSED",
    "REQUESTED",
    "QuarantineAction",
    "Requested",
    "finish_reprocess",
    "last_requests",
    "quarantine_action",
    "request_reprocess",
    "requested_messages",
]

QUARANTINED, REQUESTED, REPROCESSED = "quarantined", "requested", "reprocessed"
"""``failed_message.status``: in the quarantine; asked to be processed again; processed again."""
QUARANTINE_KEEP_KIB = 25 * 1024
"""How much of a quarantined message is kept (whole, below any usual message size limit)."""
MAX_TEXT = 2000

_F = m.failed_message
_K = kept_message


class QuarantineAction(SQLModel, table=True):
    """One step in the life of a quarantined message (append-only): requested, processed, failed."""

    __tablename__: ClassVar[str] = "quarantine_action"

    id: int | None = Field(default=None, sa_column=sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True))
    failed_id: int = Field(sa_type=sa.BigInteger, index=True)
    action: str = Field()
    actor: str = Field(default="")
    note: str = Field(default="", sa_type=sa.Text)
    error: str = Field(default="", sa_type=sa.Text)
    message_ref: int | None = Field(default=None, sa_type=sa.BigInteger, nullable=True)
    """The ledger row of the message once it was processed."""
    at: datetime = Field(sa_type=UTCDateTime)


quarantine_action: sa.Table = QuarantineAction.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Requested:
    """A quarantined message to process again, with its kept copy (``data`` is None, or shorter
    than ``size``, when it was not kept whole)."""

    id: int
    mailbox: str
    uidvalidity: int | None
    uid: int | None
    content_hash: str
    recorded_at: datetime
    data: bytes | None
    size: int


@dataclass(frozen=True, slots=True)
class LastRequest:
    actor: str
    note: str
    at: datetime


def request_reprocess(db: Database, failed_id: int, *, actor: str, note: str = "",
                      now: datetime | None = None) -> None:
    """Mark a quarantined message for processing again (the daemon does it at its next look).
    QueryError when there is no such message, it is out of the quarantine already, or its copy
    was not kept whole."""
    at_now = as_utc(now) or utcnow()

    def work(conn: Connection) -> None:
        row = conn.execute(
            sa.select(_F.c.status, _F.c.content_hash, _K.c.size, sa.func.length(_K.c.data))
            .select_from(_F.outerjoin(_K, _K.c.content_hash == _F.c.content_hash))
            .where(_F.c.id == failed_id)
        ).first()
        if row is None:
            raise QueryError(f"there is no quarantined message {failed_id}")
        status, _, size, length = row
        if status == REPROCESSED:
            raise QueryError(f"message {failed_id} was processed again already")
        if size is None:
            raise QueryError(f"message {failed_id} was not kept (database.keep_report_kib is 0, or it was "
                             "quarantined before messages were kept): move it from the quarantine folder back "
                             "into the mailbox instead")
        if length != size:
            raise QueryError(f"message {failed_id} was kept cut ({length:,} of {size:,} bytes): move it from "
                             "the quarantine folder back into the mailbox instead")
        conn.execute(sa.update(_F).where(_F.c.id == failed_id).values(status=REQUESTED))
        conn.execute(sa.insert(quarantine_action).values(failed_id=failed_id, action=REQUESTED, actor=actor,
                                                         note=note[:MAX_TEXT], at=at_now))

    db.write(work)


def requested_messages(db: Database, mailboxes: list[str], limit: int = 50) -> list[Requested]:
    """The oldest requests for these mailboxes, with their kept copies (an index probe: only
    requested rows are in ``ix_failed_message_requested``)."""
    if not mailboxes:
        return []
    query = (
        sa.select(_F.c.id, _F.c.mailbox, _F.c.uidvalidity, _F.c.uid, _F.c.content_hash, _F.c.recorded_at,
                  _K.c.data, _K.c.size)
        .select_from(_F.outerjoin(_K, _K.c.content_hash == _F.c.content_hash))
        .where(_F.c.status == REQUESTED, _F.c.mailbox.in_(mailboxes))
        .order_by(_F.c.id)
        .limit(limit)
    )
    with db.reading() as conn:
        return [Requested(row.id, row.mailbox, row.uidvalidity, row.uid, row.content_hash, row.recorded_at,
                          bytes(row.data) if row.data is not None else None, int(row.size or 0))
                for row in conn.execute(query)]


def finish_reprocess(db: Database, failed_id: int, *, actor: str, error: str = "", message_ref: int | None = None,
                     now: datetime | None = None) -> None:
    """The outcome of processing a requested message again: out of the quarantine (no ``error``),
    or back in it with the new error. Only a row still ``requested`` changes."""
    at_now = as_utc(now) or utcnow()

    def work(conn: Connection) -> None:
        changes: dict[str, object] = {"status": QUARANTINED if error else REPROCESSED}
        if error:
            changes["error"] = error
        updated = conn.execute(sa.update(_F).where(_F.c.id == failed_id, _F.c.status == REQUESTED).values(**changes))
        if updated.rowcount:
            conn.execute(sa.insert(quarantine_action).values(
                failed_id=failed_id, action="failed" if error else "processed", actor=actor, error=error[:MAX_TEXT],
                message_ref=message_ref, at=at_now))

    db.write(work)


def last_requests(conn: Connection, failed_ids: list[int]) -> dict[int, LastRequest]:
    """The newest request of each of these messages (who asked, why, when)."""
    if not failed_ids:
        return {}
    t = quarantine_action.c
    query = (sa.select(t.failed_id, t.actor, t.note, t.at)
             .where(t.failed_id.in_(failed_ids), t.action == REQUESTED).order_by(t.id))
    return {int(row.failed_id): LastRequest(row.actor, row.note, row.at) for row in conn.execute(query)}
