"""Throwaway PostgreSQL databases for tests and benchmarks, and emptying a store between tests.

The server is reached through the admin URL ($BOUNCE_TEST_POSTGRES_URL, default the machine's
127.0.0.1:5432, user postgres, database test); every database made here has a name of its own
(prefix, process id, random part) and is dropped at the end, so that runs never clobber each
other or anything else on the server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ADMIN_URL = os.environ.get("BOUNCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_problem() -> str | None:
    """None when the PostgreSQL server answers, else why not (one line)."""
    engine = sa.create_engine(ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


def unreachable_reason(problem: str | None) -> str:
    return f"PostgreSQL at {sa.make_url(ADMIN_URL).render_as_string()} not reachable: {problem}"


class PostgresDatabases:
    """Makes throwaway PostgreSQL databases and drops them all at the end."""

    def __init__(self, prefix: str = "bp_test") -> None:
        self.prefix = prefix
        self.admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self) -> str:
        """A new empty database; its URL."""
        name = f"{self.prefix}_{os.getpid()}_{secrets.token_hex(4)}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.names:
            self.names.remove(name)

    def set_connections(self, url: str, allowed: bool) -> None:
        """Let clients connect to the database, or refuse them and end every open session."""
        name = sa.make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.names.clear()
        self.admin.dispose()


@contextlib.contextmanager
def throwaway_postgres(prefix: str = "bp_test") -> Iterator[str]:
    """One database of its own for the ``with`` block (benchmarks, single tests)."""
    databases = PostgresDatabases(prefix)
    try:
        yield databases.create()
    finally:
        databases.drop_all()


def empty_store_tables(url: str) -> None:
    """Remove every row from the store's tables (faster than a new database per test)."""
    from processor.store.models import METADATA

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if sa.inspect(conn).has_table("suppression"):
                names = ", ".join(t.name for t in METADATA.sorted_tables)
                conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


ENGINES = ("sqlite", "postgresql")
"""The engines every store-backed test suite runs on."""


def empty_database(engine: str, directory: Path, request: Any) -> str:
    """The URL of an empty database of ``engine``, migrated to the current schema: a new SQLite
    file in ``directory``, or this test session's PostgreSQL database (the ``postgres_url``
    fixture, which skips or fails when the server is missing) with its store tables emptied."""
    from processor.config import DatabaseSettings, Settings
    from processor.store import open_store

    if engine == "sqlite":
        url = f"sqlite:///{directory / 'store.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
        empty_store_tables(url)
    open_store(Settings(database=DatabaseSettings(url=url))).close()
    return url

