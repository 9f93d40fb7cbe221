"""Fixtures for the console's tests: each store-backed test runs on SQLite and PostgreSQL
(``db_url`` from tests/conftest.py); tokens are in tests/console/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from processor.api import create_app
from processor.config import Settings
from processor.store import Store
from tests.console.helpers import make_settings


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    """A client of the whole app (API and console) over plain HTTP, not signed in."""
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as test_client:
        yield test_client
