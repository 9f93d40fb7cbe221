"""Reads for a process that keeps its own copy of the list (the policy service).

Every change to the list is an ``event`` row, so a copy stays current by reading the events
after the last one it saw and then the current entries of just those addresses. These reads go
through ``Database.raw_read`` (the driver's cursor, with its reconnect retry); the full scan
streams on a server-side cursor (PostgreSQL) so a million entries never sit in one list.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from processor.store._db import Database, raw_active
from processor.timestamps import raw_time

ACTIVE_COLUMNS = "address, scope, source, reason, bounce_type, expires_at"
ActiveRow = tuple[str, str, str, str, str, Any]
"""(address, scope, source, reason, bounce_type, expires_at as the driver returns it)."""
ADDRESS_CHUNK = 500
"""Addresses per query when reading the entries of changed addresses."""
SQLITE_SCAN_CACHE_KIB = 2048
"""SQLite page cache of a scan's connection (an index look-up never needs the pages it reads)."""
PERMANENT = float("inf")


def expiry_epoch(value: Any) -> float:
    """An ``expires_at`` from an ActiveRow as epoch seconds (``PERMANENT`` for None)."""
    moment = raw_time(value)
    return PERMANENT if moment is None else moment.timestamp()


class ActiveScan:
    """Every active entry, read in chunks with ``fetch``; blocking calls (run them in a thread).
    Close it (or use it as a context manager) to give the connection back."""

    def __init__(self, db: Database, now: datetime) -> None:
        self.pg = db.pg
        self.pooled = db.engine.raw_connection()
        try:
            if self.pg:
                self.cursor: Any = self.pooled.driver_connection.cursor(name="policyd_load")  # type: ignore[union-attr]
            else:
                self.cursor = self.pooled.cursor()
                self.cursor.execute(f"PRAGMA cache_size=-{SQLITE_SCAN_CACHE_KIB}")
            self.cursor.execute(
                f"SELECT {ACTIVE_COLUMNS} FROM suppression WHERE {raw_active(db.mark())}", (db.ts(now),)
            )
        except BaseException:
            self.close()
            raise

    def fetch(self, count: int) -> list[ActiveRow]:
        rows: list[ActiveRow] = self.cursor.fetchmany(count)
        return rows

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self.cursor.close()
            if self.pg:
                with contextlib.suppress(Exception):
                    self.pooled.rollback()
        finally:
            self.pooled.close()

    def __enter__(self) -> ActiveScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def max_event_id(db: Database) -> int:
    """The newest event id (0 when there is none)."""
    rows = db.raw_read("SELECT max(id) FROM event", ())
    return int(rows[0][0] or 0)


def events_after(db: Database, event_id: int, limit: int) -> list[tuple[int, str]]:
    """(id, address) of up to ``limit`` events after ``event_id``, in id order."""
    return db.raw_read(f"SELECT id, address FROM event WHERE id > {db.mark()} ORDER BY id LIMIT {int(limit)}",
                       (event_id,))


def active_rows(db: Database, addresses: list[str], now: datetime) -> list[ActiveRow]:
    """The active entries (every scope) of these normalised addresses."""
    stamp = db.ts(now)
    rows: list[ActiveRow] = []
    for start in range(0, len(addresses), ADDRESS_CHUNK):
        chunk = addresses[start : start + ADDRESS_CHUNK]
        if db.pg:
            sql = f"SELECT {ACTIVE_COLUMNS} FROM suppression WHERE address = ANY(%s) AND {raw_active('%s')}"
            rows += db.raw_read(sql, (chunk, stamp))
        else:
            sql = (f"SELECT {ACTIVE_COLUMNS} FROM suppression WHERE address IN ({db.mark(len(chunk))}) "
                   f"AND {raw_active('?')}")
            rows += db.raw_read(sql, (*chunk, stamp))
    return rows
