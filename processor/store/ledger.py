"""The ledger: which messages were processed or failed, and each mailbox's position.

Plain functions on a ``Database``; the ``Store`` facade exposes them. The ledger row itself is
written by ``recording`` (in the message's transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from processor.store import models as m
from processor.store._db import LOOKUP_CHUNK, Database, as_utc, utcnow
from processor.store.kept import KeptReports
from processor.store.quarantine import QUARANTINE_KEEP_KIB
from processor.store.types import MailboxPosition, MessageRef
from processor.timestamps import raw_time


def recorded_uids(db: Database, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
    """Which of these UIDs the ledger holds for (mailbox, UIDVALIDITY): committed earlier. On the
    driver's cursor (the daemon asks before each batch: 270 us through SQLAlchemy for 250 UIDs on
    SQLite, 23 us so)."""
    found: set[int] = set()
    head = "SELECT uid FROM processed_message WHERE mailbox = {q} AND uidvalidity = {q} AND uid"
    for start in range(0, len(uids), LOOKUP_CHUNK):
        chunk = [int(uid) for uid in uids[start : start + LOOKUP_CHUNK]]
        if db.pg:
            rows = db.raw_read(head.format(q="%s") + " = ANY(%s)", (mailbox, uidvalidity, chunk))
        else:
            rows = db.raw_read(head.format(q="?") + f" IN ({db.mark(len(chunk))})", (mailbox, uidvalidity, *chunk))
        found.update(int(row[0]) for row in rows)
    return found


def hashes_in(db: Database, table: sa.Table, hashes: Sequence[str]) -> set[str]:
    """Which of these content hashes ``table`` (processed or failed messages) holds."""
    found: set[str] = set()
    with db.reading() as conn:
        for start in range(0, len(hashes), LOOKUP_CHUNK):
            chunk = list(hashes[start : start + LOOKUP_CHUNK])
            found.update(row[0] for row in conn.execute(sa.select(table.c.content_hash).where(
                table.c.content_hash.in_(chunk))))
    return found


def ledger_id(db: Database, message: MessageRef, conn: Connection | None = None) -> int | None:
    """The ledger row of this message, by (mailbox, uidvalidity, uid) or content hash."""
    pm = m.processed_message
    by_hash = pm.c.content_hash == message.content_hash
    if message.uid is not None:
        by_uid = sa.and_(
            pm.c.mailbox == message.mailbox,
            pm.c.uidvalidity == message.uidvalidity,
            pm.c.uid == message.uid,
        )
        condition = sa.or_(by_hash, by_uid)
    else:
        condition = by_hash
    query = sa.select(pm.c.id).where(condition).order_by(pm.c.id).limit(1)
    if conn is not None:
        return conn.execute(query).scalar()
    with db.reading() as reader:
        return reader.execute(query).scalar()


def record_failed(
    db: Database,
    message: MessageRef,
    error: str,
    *,
    status: str = "quarantined",
    now: datetime | None = None,
    keep_report_kib: int = 0,
) -> int:
    """Record a message that was quarantined or failed, with its error, and keep it whole (up to
    ``QUARANTINE_KEEP_KIB``) when messages are kept at all (``keep_report_kib`` > 0): for the
    console's download and its "process again" (processor.store.quarantine). Not a ledger entry:
    the same message is processed normally once the problem is fixed."""
    at_now = as_utc(now) or utcnow()

    def work(conn: Connection) -> int:
        new_id: int = conn.execute(
            sa.insert(m.failed_message)
            .values(
                mailbox=message.mailbox,
                uidvalidity=message.uidvalidity,
                uid=message.uid,
                content_hash=message.content_hash,
                status=status,
                error=error,
                recorded_at=at_now,
            )
            .returning(m.failed_message.c.id)
        ).scalar_one()
        KeptReports(QUARANTINE_KEEP_KIB if keep_report_kib else 0).write_one(conn, message, at_now, db.pg)
        return new_id

    return db.write(work)


def get_mailbox_state(db: Database, mailbox: str) -> MailboxPosition | None:
    """The mailbox's UIDVALIDITY and last UID, or None before its first run (on the driver's
    cursor: the daemon asks after each batch)."""
    rows = db.raw_read(f"SELECT mailbox, uidvalidity, last_uid, updated_at FROM mailbox_state WHERE mailbox = "
                       f"{db.mark()}", (mailbox,))
    if not rows:
        return None
    name, uidvalidity, last_uid, updated_at = rows[0]
    return MailboxPosition(name, uidvalidity, last_uid, raw_time(updated_at))  # type: ignore[arg-type]


def set_mailbox_state(
    db: Database, mailbox: str, uidvalidity: int, last_uid: int, *, now: datetime | None = None
) -> None:
    """Set a mailbox's UIDVALIDITY and last UID (a new UIDVALIDITY resets the position)."""
    at_now = as_utc(now) or utcnow()
    values = {"uidvalidity": uidvalidity, "last_uid": last_uid, "updated_at": at_now}

    def work(conn: Connection) -> None:
        conn.execute(
            db.insert(m.mailbox_state)
            .values(mailbox=mailbox, **values)
            .on_conflict_do_update(index_elements=["mailbox"], set_=values)
        )

    db.write(work)
