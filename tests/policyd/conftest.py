"""Fixtures for the policy service's tests: a store on SQLite or on a PostgreSQL database of this
test session's own, and the real CLI in a subprocess (helpers in tests/policyd/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processor.store import Store, open_store
from tests.policyd.helpers import PolicydProcess, make_settings, write_config


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An empty, migrated SQLite database."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(make_settings(url)).close()
    return url


@pytest.fixture
def store_at() -> Iterator[Any]:
    """``store_at(url)``: a Store on that database (closed at the end of the test)."""
    opened: list[Store] = []

    def factory(url: str) -> Store:
        store = open_store(make_settings(url))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def policyd_process(tmp_path: Path) -> Iterator[Any]:
    """``policyd_process(db_url, listen=..., **policyd_settings)``: the real CLI, stopped at the end."""
    started: list[PolicydProcess] = []

    def start(db_url: str, listen: str | None = None, **policyd: Any) -> PolicydProcess:
        from tests.servers import free_port

        listen = listen or f"inet:127.0.0.1:{free_port()}"
        config = write_config(tmp_path / f"policyd-{len(started)}.toml", db_url, policyd)
        process = PolicydProcess(config, listen, tmp_path / f"policyd-{len(started)}.log")
        started.append(process)
        process.wait_listening()
        return process

    yield start
    for process in started:
        process.stop()
