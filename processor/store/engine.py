"""Engines for the store's two databases, and the migrations that shape them.

- SQLite (``sqlite:///path.db``, the default): WAL journal, a busy timeout, foreign keys on,
  ``synchronous`` from the settings. pysqlite's own transaction handling is switched off so that
  the store emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for writes (a writer takes the database's
  write lock before it reads the history it decides from, so two processes never decide from the
  same stale history), plain ``BEGIN`` for reads (readers never block in WAL mode).
- PostgreSQL (``postgresql+psycopg://user@host/db``): psycopg 3, a connection pool, READ
  COMMITTED. Writers serialise per address with transaction-level advisory locks (see
  ``processor.store.repo``).

``upgrade(engine)`` applies the Alembic migrations under a lock, so that several processes
starting at once (daemon, API) migrate once.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from processor.config import DatabaseSettings

__all__ = [
    "ADDRESS_LOCK_CLASS",
    "MIGRATION_LOCK_CLASS",
    "StoreError",
    "at_head",
    "create_store_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "head_revision_of_files",
    "stored_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

MIGRATION_LOCK_CLASS = 0x42500000
"""PostgreSQL advisory lock class id (first int4 key) held while migrating."""
ADDRESS_LOCK_CLASS = 0x42500001
"""PostgreSQL advisory lock class id for per-address write locks. Other users of advisory locks
in this project (mailbox leases) must use a different class id."""

IMMEDIATE = "bp_sqlite_immediate"
"""Connection execution option: the next transaction on SQLite begins with BEGIN IMMEDIATE."""
READONLY = "bp_sqlite_readonly"
"""Connection execution option: reads on SQLite without BEGIN (each statement autocommits)."""


class StoreError(Exception):
    """The database cannot be used (unreachable, unwritable, wrong schema); the message says why."""


def _sqlite_path(url: sa.URL) -> Path | None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def create_store_engine(settings: DatabaseSettings | None = None, *, url: str | None = None) -> Engine:
    """An engine configured for the store (see the module docstring)."""
    settings = settings or DatabaseSettings()
    try:
        parsed = sa.make_url(url or settings.url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"invalid database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, settings)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = f"-c statement_timeout={settings.statement_timeout_ms}" if settings.statement_timeout_ms else ""
        return sa.create_engine(
            parsed,
            connect_args={"connect_timeout": settings.connect_timeout_s, **({"options": options} if options else {})},
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
            pool_recycle=3600,
            pool_use_lifo=True,
        )
    raise StoreError(f"unsupported database {backend!r}: use sqlite:///file.db or postgresql+psycopg://...")


def _sqlite_engine(url: sa.URL, settings: DatabaseSettings) -> Engine:
    path = _sqlite_path(url)
    if path is not None and not path.parent.exists():
        raise StoreError(f"cannot open database {path}: directory {path.parent} does not exist")
    engine = sa.create_engine(
        url,
        connect_args={"timeout": settings.busy_timeout_ms / 1000, "check_same_thread": False},
        pool_use_lifo=True,
    )
    synchronous = settings.sqlite_synchronous.upper()
    busy = settings.busy_timeout_ms
    mmap_bytes = int(settings.sqlite_mmap_mb) * 1024 * 1024
    cache_kib = int(settings.sqlite_cache_mb) * 1024

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if path is not None:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA cache_size=-{cache_kib}")
            if path is not None and mmap_bytes:
                cursor.execute(f"PRAGMA mmap_size={mmap_bytes}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get(IMMEDIATE):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get(READONLY):
            connection.exec_driver_sql("BEGIN")

    return engine


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:None|[\"']([^\"']+)[\"'])", re.M)


@functools.cache
def head_revision_of_files() -> str | None:
    """The newest migration, read from the migration files' ``revision`` and ``down_revision``
    lines without importing Alembic (which costs most of a second at start-up); None when the
    files do not name exactly one head (then only Alembic can tell). ``head_revision`` is the
    authority; a test checks that the two agree."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = dict((key, value) for key, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        if not found["revision"]:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stored_revision(engine: Engine) -> str | None:
    """The database's revision by one plain query on Alembic's version table, without importing
    Alembic; None when the table is missing or does not hold exactly one revision."""
    try:
        with engine.connect() as connection:
            connection.execution_options(**{READONLY: True})
            if not engine.dialect.has_table(connection, "alembic_version"):
                return None
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot reach the database: {_reason(exc)}") from None
    return str(rows[0][0]) if len(rows) == 1 else None


def at_head(engine: Engine) -> bool:
    """Whether the database is at this code's newest migration, known without Alembic (False
    also when only Alembic can tell: the caller then asks it)."""
    head = head_revision_of_files()
    try:
        return head is not None and stored_revision(engine) == head
    except StoreError:  # unreachable: the caller's own path (migrate or check) says so, as before
        return False


def current_revision(engine: Engine) -> str | None:
    """The database's migration revision (None: not migrated yet)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot reach the database: {_reason(exc)}") from None


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Apply migrations up to ``revision`` under a lock; returns (revision before, after)."""
    import logging

    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE: True})
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_CLASS, 0))
                    )
                from alembic.runtime.migration import MigrationContext

                before = MigrationContext.configure(connection).get_current_revision()
                command.upgrade(_alembic_config(connection), revision)
                after = MigrationContext.configure(connection).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot migrate the database: {_reason(exc)}") from None
    if before != after:
        import structlog

        structlog.get_logger(__name__).info("store.migrated", before=before, after=after)
    return before, after or ""


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to ``revision`` ("base": an empty database). For operators and tests."""
    from alembic import command

    with engine.connect() as connection:
        connection.execution_options(**{IMMEDIATE: True})
        with connection.begin():
            if engine.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_CLASS, 0)))
            command.downgrade(_alembic_config(connection), revision)


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's message, first line only (never the URL, which may carry a password)."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
