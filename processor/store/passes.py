"""Each mailbox's last pass, as the daemon that worked it saw it: when it ended, how many messages
were still waiting (the backlog), which daemon held the mailbox's lease, and the last failure.

One row per mailbox (``mailbox_pass``), written once per pass (never per message) by the daemon
(``processor.daemon.mailbox_worker``); the console's mailboxes page reads it. A daemon is named
``host:pid`` (``daemon_identity``), so an operator can tell which process works which folder.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from processor.store._db import Database, as_utc, utcnow
from processor.store.models import UTCDateTime

__all__ = ["MailboxPass", "PassRecord", "daemon_identity", "mailbox_pass", "read_passes", "record_pass",
           "record_pass_error", "release_holder"]

MAX_ERROR = 2000
"""The longest failure text kept (the log has the rest)."""


class MailboxPass(SQLModel, table=True):
    __tablename__: ClassVar[str] = "mailbox_pass"

    mailbox: str = Field(primary_key=True)
    holder: str = Field(default="")
    """The daemon (``host:pid``) that holds the mailbox's lease ("" once it gave the lease back)."""
    last_pass_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    """When the last complete or interrupted pass ended (None: only failures so far)."""
    backlog: int | None = Field(default=None, sa_type=sa.BigInteger, nullable=True)
    """Messages still waiting in the folder when the last pass ended (None: unknown)."""
    handled: int = Field(default=0, sa_type=sa.BigInteger)
    """Messages the last pass handled."""
    last_error: str = Field(default="", sa_type=sa.Text)
    """The last pass's failure ("" after a pass that worked)."""
    last_error_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


mailbox_pass: sa.Table = MailboxPass.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PassRecord:
    mailbox: str
    holder: str
    last_pass_at: datetime | None
    backlog: int | None
    handled: int
    last_error: str
    last_error_at: datetime | None


def daemon_identity() -> str:
    """This process as an operator would look for it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record_pass(db: Database, mailbox: str, *, holder: str, handled: int, backlog: int | None,
                now: datetime | None = None) -> None:
    """A pass of ``mailbox`` ended (one upsert): its backlog, its holder, no error."""
    at_now = as_utc(now) or utcnow()
    values = {"holder": holder, "last_pass_at": at_now, "backlog": backlog, "handled": handled, "last_error": ""}

    def work(conn: Connection) -> None:
        conn.execute(db.insert(mailbox_pass).values(mailbox=mailbox, **values)
                     .on_conflict_do_update(index_elements=["mailbox"], set_=values))

    db.write(work)


def record_pass_error(db: Database, mailbox: str, *, holder: str, error: str, now: datetime | None = None) -> None:
    """A pass of ``mailbox`` failed (one upsert); its last backlog is kept."""
    at_now = as_utc(now) or utcnow()
    values = {"holder": holder, "last_error": error[:MAX_ERROR], "last_error_at": at_now}

    def work(conn: Connection) -> None:
        conn.execute(db.insert(mailbox_pass).values(mailbox=mailbox, **values)
                     .on_conflict_do_update(index_elements=["mailbox"], set_=values))

    db.write(work)


def release_holder(db: Database, mailboxes: list[str], holder: str) -> None:
    """This daemon gave these mailboxes' leases back: it no longer names itself their holder
    (another daemon may have named itself already: that row is left alone)."""
    if not mailboxes:
        return

    def work(conn: Connection) -> None:
        conn.execute(sa.update(mailbox_pass).where(mailbox_pass.c.mailbox.in_(mailboxes),
                                                   mailbox_pass.c.holder == holder).values(holder=""))

    db.write(work)


def read_passes(conn: Connection) -> dict[str, PassRecord]:
    """Every mailbox's last pass, by mailbox name."""
    t = mailbox_pass.c
    query = sa.select(t.mailbox, t.holder, t.last_pass_at, t.backlog, t.handled, t.last_error, t.last_error_at)
    return {row.mailbox: PassRecord(*row) for row in conn.execute(query)}
