"""The messages kept for the console: the first ``keep_report_kib`` KiB of each processed or
quarantined message, by content hash, written in the same transaction as its ledger or failure row.

The console shows the report a verdict came from (the ledger row of an event names the hash) and
offers a quarantined message for download. A message longer than the limit is kept cut, with its
full size, so the console can say how much is missing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from processor.store._sql import insert_rows

if TYPE_CHECKING:
    from processor.store.types import MessageRef

__all__ = ["KeptMessage", "KeptReports", "kept_message"]


class KeptMessage(SQLModel, table=True):
    __tablename__: ClassVar[str] = "kept_message"

    content_hash: str = Field(primary_key=True, max_length=64)
    size: int = Field(sa_type=sa.BigInteger)
    """The whole message's size in bytes (``data`` may be shorter)."""
    data: bytes = Field(sa_type=sa.LargeBinary)
    recorded_at: datetime = Field(sa_type=sa.DateTime)


kept_message: sa.Table = KeptMessage.__table__  # type: ignore[attr-defined]

_INSERT = "INSERT INTO kept_message (content_hash, size, data, recorded_at)"
_TYPES = ("text", "bigint", "bytea", "timestamp")
_ON_CONFLICT = "ON CONFLICT (content_hash) DO NOTHING"


class KeptReports:
    """The messages of one recording transaction to keep, written in one batch at its end."""

    __slots__ = ("_limit", "_rows", "_stamp")

    def __init__(self, limit_kib: int) -> None:
        self._limit = limit_kib * 1024
        self._rows: list[tuple[str, int, bytes, Any]] = []
        self._stamp: tuple[datetime | None, datetime | None] = (None, None)
        """The last ``now`` given and its naive UTC form (a batch gives one ``now`` for all)."""

    def add(self, message: MessageRef, now: datetime) -> None:
        if self._limit and message.raw is not None:
            given, stamp = self._stamp
            if stamp is None or given is not now:
                stamp = now.astimezone(UTC).replace(tzinfo=None)
                self._stamp = (now, stamp)
            self._rows.append((message.content_hash, len(message.raw), message.raw[: self._limit], stamp))

    def flush(self, cursor: Any, pg: bool) -> None:
        """Insert inside the caller's transaction (``cursor`` is its DB-API cursor)."""
        if self._rows:
            rows = self._rows if pg else [(h, n, d, t.isoformat(" ", "microseconds")) for h, n, d, t in self._rows]
            insert_rows(cursor, pg, _INSERT, _TYPES, rows, tail=_ON_CONFLICT)
            self._rows.clear()

    def write_one(self, conn: sa.Connection, message: MessageRef, now: datetime, pg: bool) -> None:
        """Keep one message inside the caller's SQLAlchemy transaction."""
        self.add(message, now)
        if self._rows:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                self.flush(cursor, pg)
            finally:
                cursor.close()


def read_kept(conn: sa.Connection, content_hash: str) -> KeptMessage | None:
    row = conn.execute(sa.select(kept_message).where(kept_message.c.content_hash == content_hash)).first()
    if row is None:
        return None
    return KeptMessage(content_hash=row.content_hash, size=row.size, data=bytes(row.data), recorded_at=row.recorded_at)
