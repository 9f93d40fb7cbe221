"""Fixtures for the store's tests: every store test runs on SQLite and on PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (user postgres, trust auth; override with
BOUNCE_TEST_POSTGRES_URL). Each test session creates its own database ``bp_test_<pid>_<hex>``
from the ``test`` database and drops it at the end, so concurrent sessions never clobber each
other; each test starts from empty tables. A missing server skips on a laptop and fails in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from processor.config import DatabaseSettings, PolicySettings, Settings
from processor.store import Store, open_store


def make_settings(url: str, **policy: Any) -> Settings:
    return Settings(database=DatabaseSettings(url=url), policy=PolicySettings(**policy))


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
