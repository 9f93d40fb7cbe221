"""Fixtures for the store's tests: every store test runs on SQLite and on PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (user postgres, trust auth; override with
BOUNCE_TEST_POSTGRES_URL). Each test session creates its own database ``bp_test_<pid>_<hex>``
from the ``test`` database and drops it at the end, so concurrent sessions never clobber each
other; each test starts from empty tables. A missing server skips on a laptop and fails in CI.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from processor.config import DatabaseSettings, PolicySettings, Settings
from processor.store import Store, open_store
from processor.store.models import METADATA
from tests.conftest import require

ADMIN_URL = os.environ.get("BOUNCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ENGINES = ["sqlite", "postgresql"]


def _postgres_reachable() -> str | None:
    """None when the server answers, else why not."""
    engine = sa.create_engine(ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped at the end."""
    problem = _postgres_reachable()
    require(problem is None, f"PostgreSQL at {sa.make_url(ADMIN_URL).render_as_string()} not reachable: {problem}")
    name = f"bp_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_settings(url: str, **policy: Any) -> Settings:
    return Settings(database=DatabaseSettings(url=url), policy=PolicySettings(**policy))


def _empty_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            names = ", ".join(t.name for t in METADATA.sorted_tables)
            if sa.inspect(conn).has_table("suppression"):
                conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def db_url(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty, migrated database of the engine under test."""
    if engine_name == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        _empty_postgres(url)
    open_store(make_settings(url)).close()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A store with the default policy on an empty database."""
    opened = open_store(make_settings(db_url))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def store_with() -> Iterator[Any]:
    """Open more stores (other settings) on the test's database; all closed at the end."""
    opened: list[Store] = []

    def factory(url: str, **policy: Any) -> Store:
        made = open_store(make_settings(url, **policy))
        opened.append(made)
        return made

    yield factory
    for made in opened:
        made.close()
