"""Which daemon works which mailbox: several daemons may run against the same mailboxes (for
scale and fail-over), each mailbox worked by one of them at a time.

- PostgreSQL: a session-level advisory lock per mailbox (class ``MAILBOX_LOCK_CLASS``), held on a
  dedicated connection for as long as the daemon works the mailbox. A daemon that dies loses its
  locks when its connection ends: at once when the process is killed (the kernel closes the
  socket), within ``lease_seconds`` when its host vanishes (TCP keepalives and
  ``tcp_user_timeout`` on both ends are tuned to that). The other daemons try to take unheld
  mailboxes every third of a lease period, so a dead daemon's mailboxes move within a lease period.
  If the lock connection itself breaks, every lease is dropped at once (another daemon may take
  them) and taken again when possible.
- SQLite: one daemon per database file; every mailbox is this daemon's (``LocalLeases``).

Even when two daemons overlap for a moment, the ledger keeps every message from counting twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Any

import sqlalchemy as sa
import structlog

__all__ = ["MAILBOX_LOCK_CLASS", "Leases", "LocalLeases", "PostgresLeases", "make_leases"]

log = structlog.get_logger(__name__)

MAILBOX_LOCK_CLASS = 0x42500002
"""PostgreSQL advisory lock class id for mailbox leases (the store uses 0x42500000/1)."""


def mailbox_key(name: str) -> int:
    key = zlib.crc32(f"mailbox:{name}".encode())
    return key - (1 << 32) if key >= (1 << 31) else key


class Leases:
    """The mailboxes this daemon may work now."""

    def holds(self, name: str) -> bool:
        raise NotImplementedError

    async def refresh(self, names: Iterable[str]) -> list[str]:
        """Check the held leases and try to take the others; returns the newly taken ones."""
        raise NotImplementedError

    async def close(self) -> None:
        """Give every lease back."""

    def problem(self, name: str) -> str:
        """Why this daemon does not hold ``name`` (for the log)."""
        return "another daemon holds its lease"

    @property
    def reconnecting(self) -> bool:
        """Whether the leases wait for the database to answer again (refresh them often)."""
        return False


class LocalLeases(Leases):
    """SQLite: this daemon works every mailbox."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def holds(self, name: str) -> bool:
        return True

    async def refresh(self, names: Iterable[str]) -> list[str]:
        new = [n for n in names if n not in self._seen]
        self._seen.update(new)
        return new


class PostgresLeases(Leases):
    """PostgreSQL advisory locks on a dedicated connection (see the module docstring)."""

    def __init__(self, url: str, lease_seconds: float, executor: Executor) -> None:
        parsed = sa.make_url(url)
        self._conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
        self._lease = lease_seconds
        self._executor = executor
        self._conn: Any = None
        self._held: set[str] = set()
        self._unreachable = False

    def holds(self, name: str) -> bool:
        return name in self._held

    def problem(self, name: str) -> str:
        if self._unreachable:
            return ("the database connection holding its lease broke (the database did not answer); "
                    "taken again as soon as the database answers")
        return "another daemon holds its lease"

    @property
    def reconnecting(self) -> bool:
        return self._unreachable

    def _connect(self) -> Any:
        import psycopg

        idle = max(1, int(self._lease / 3))
        interval = max(1, int(self._lease / 9))
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=max(2, int(self._lease / 3)),
            keepalives=1,
            keepalives_idle=idle,
            keepalives_interval=interval,
            keepalives_count=3,
            tcp_user_timeout=int(self._lease * 1000),
            application_name="bounce-processor daemon",
        )
        # the server side: forget a vanished daemon within the lease period
        conn.execute(f"SET tcp_keepalives_idle = {idle}")
        conn.execute(f"SET tcp_keepalives_interval = {interval}")
        conn.execute("SET tcp_keepalives_count = 3")
        conn.execute(f"SET tcp_user_timeout = {int(self._lease * 1000)}")
        return conn

    def _refresh(self, wanted: list[str], held: set[str]) -> tuple[bool, list[str]]:
        """(whether the held leases survived, the names newly taken). Runs in a worker thread."""
        import psycopg

        survived = True
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
            except psycopg.Error:
                survived = False
                self._drop()
        if self._conn is None:
            survived = not held
            try:
                self._conn = self._connect()
            except psycopg.Error as exc:
                log.warning("lease.database_unreachable", database=self._where,
                            error=(str(exc).strip().splitlines() or ["?"])[0])
                return survived, []
        taken = []
        try:
            for name in wanted:
                if name in held and survived:
                    continue
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (MAILBOX_LOCK_CLASS, mailbox_key(name))
                ).fetchone()
                if row and row[0]:
                    taken.append(name)
        except psycopg.Error as exc:
            log.warning("lease.error", error=(str(exc).strip().splitlines() or ["?"])[0])
            self._drop()
            return False, []
        return survived, taken

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    async def refresh(self, names: Iterable[str]) -> list[str]:
        wanted = list(names)
        loop = asyncio.get_running_loop()
        survived, taken = await loop.run_in_executor(self._executor, self._refresh, wanted, set(self._held))
        self._unreachable = self._conn is None
        if not survived and self._held:
            log.warning("lease.all_lost", mailboxes=sorted(self._held),
                        why="the lock connection broke; another daemon may take them")
            self._held.clear()
        for name in taken:
            self._held.add(name)
            log.info("lease.taken", mailbox=name)
        return taken

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        self._held.clear()
        await loop.run_in_executor(self._executor, self._drop)


def make_leases(url: str, lease_seconds: float, executor: Executor) -> Leases:
    """Advisory-lock leases on PostgreSQL, local ones on SQLite."""
    if sa.make_url(url).get_backend_name() == "postgresql":
        return PostgresLeases(url, lease_seconds, executor)
    return LocalLeases()
