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
- Sharing (PostgreSQL): each daemon also holds a presence lock (class ``DAEMON_LOCK_CLASS``, its
  lock connection's backend pid) on the same connection, so the live daemons are counted from
  ``pg_locks`` and vanish from the count exactly when their leases do. Each daemon keeps about its
  fair share, ceil(mailboxes / live daemons): it takes free mailboxes only up to that share, and
  names its surplus when another daemon joins. The scheduler stops the surplus mailbox's worker
  first and only then gives the lock back (``release``), so a mailbox is never worked by two
  daemons at once; when a daemon leaves, the share grows and the others take its mailboxes.
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

__all__ = ["DAEMON_LOCK_CLASS", "MAILBOX_LOCK_CLASS", "Leases", "LocalLeases", "PostgresLeases", "make_leases"]

log = structlog.get_logger(__name__)

MAILBOX_LOCK_CLASS = 0x42500002
"""PostgreSQL advisory lock class id for mailbox leases (the store uses 0x42500000/1)."""
DAEMON_LOCK_CLASS = 0x42500003
"""Advisory lock class id of the presence locks: one per live daemon, keyed by its backend pid."""


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

    def surplus(self) -> list[str]:
        """Held mailboxes beyond this daemon's fair share (as of the last refresh)."""
        return []

    def stop_working(self, name: str) -> None:
        """From now on ``holds(name)`` is False (the worker stops at its next batch); the lock
        itself is kept until ``release``."""

    async def release(self, name: str) -> None:
        """Give one lease back (its worker has stopped)."""

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
        self._leaving: set[str] = set()
        self._surplus: list[str] = []
        self.live_daemons = 1
        """Daemons holding a presence lock on this database, at the last refresh."""
        self._unreachable = False

    def holds(self, name: str) -> bool:
        return name in self._held and name not in self._leaving

    def surplus(self) -> list[str]:
        return [name for name in self._surplus if name in self._held]

    def stop_working(self, name: str) -> None:
        if name in self._held:
            self._leaving.add(name)

    async def release(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        released = await loop.run_in_executor(self._executor, self._unlock, name)
        self._leaving.discard(name)
        if released:
            self._held.discard(name)
            if name in self._surplus:
                self._surplus.remove(name)
            log.info("lease.handed_back", mailbox=name, live_daemons=self.live_daemons)

    def _unlock(self, name: str) -> bool:
        """Runs in a worker thread. A broken connection has given every lock back already."""
        import psycopg

        if self._conn is None:
            return True
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (MAILBOX_LOCK_CLASS, mailbox_key(name)))
        except psycopg.Error:
            self._drop()
        return True

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
        conn.execute("SELECT pg_advisory_lock(%s, pg_backend_pid())", (DAEMON_LOCK_CLASS,))
        return conn

    def _count_live(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted "
            "AND l.objsubid = 2 AND l.classid = %s::bigint::oid",
            (DAEMON_LOCK_CLASS,),
        ).fetchone()
        return max(1, int(row[0])) if row else 1

    def _refresh(self, wanted: list[str], held: set[str]) -> tuple[bool, list[str], int]:
        """(whether the held leases survived, the names newly taken, the live daemons). Runs in a
        worker thread. Free mailboxes are taken only up to the fair share."""
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
                return survived, [], self.live_daemons
        taken: list[str] = []
        try:
            live = self._count_live()
            keep = len(held & set(wanted)) if survived else 0
            share = -(-len(wanted) // live)
            for name in wanted:
                if name in held and survived:
                    continue
                if keep + len(taken) >= share:
                    break
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (MAILBOX_LOCK_CLASS, mailbox_key(name))
                ).fetchone()
                if row and row[0]:
                    taken.append(name)
        except psycopg.Error as exc:
            log.warning("lease.error", error=(str(exc).strip().splitlines() or ["?"])[0])
            self._drop()
            return False, [], self.live_daemons
        return survived, taken, live

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    async def refresh(self, names: Iterable[str]) -> list[str]:
        wanted = list(names)
        loop = asyncio.get_running_loop()
        survived, taken, live = await loop.run_in_executor(self._executor, self._refresh, wanted, set(self._held))
        self._unreachable = self._conn is None
        if not survived and self._held:
            log.warning("lease.all_lost", mailboxes=sorted(self._held),
                        why="the lock connection broke; another daemon may take them")
            self._held.clear()
            self._leaving.clear()
        if live != self.live_daemons:
            log.info("lease.daemons_changed", live_daemons=live, fair_share=-(-len(wanted) // live))
        self.live_daemons = live
        for name in taken:
            self._held.add(name)
            log.info("lease.taken", mailbox=name, live_daemons=live)
        share = -(-len(wanted) // live)
        # the surplus: the last-named held mailboxes beyond the share (every daemon orders alike)
        held_in_order = [name for name in wanted if name in self._held]
        self._surplus = held_in_order[share:]
        return taken

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        self._held.clear()
        self._leaving.clear()
        await loop.run_in_executor(self._executor, self._drop)


def make_leases(url: str, lease_seconds: float, executor: Executor) -> Leases:
    """Advisory-lock leases on PostgreSQL, local ones on SQLite."""
    if sa.make_url(url).get_backend_name() == "postgresql":
        return PostgresLeases(url, lease_seconds, executor)
    return LocalLeases()
