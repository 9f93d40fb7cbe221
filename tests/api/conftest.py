"""Fixtures for the API's tests: every test that takes ``db_url`` runs on SQLite and PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (override with BOUNCE_TEST_POSTGRES_URL); the
session gets a database of its own (``bp_api_<pid>_<hex>``), dropped at the end, and each test
starts from empty tables. A missing server skips on a laptop and fails in CI (``require``).

Three tokens are configured: ``READER`` (read), ``WRITER`` (write) and ``ADMIN`` (read, write).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from processor.api import create_app
from processor.api.auth import hash_token, new_token
from processor.api.server import bind_socket, serve
from processor.config import ApiSettings, ApiToken, DatabaseSettings, Settings
from processor.store import Store

READER = new_token()
WRITER = new_token()
ADMIN = new_token()
TOKENS = [
    ApiToken(name="reader", hash=hash_token(READER), scopes=["read"]),
    ApiToken(name="writer", hash=hash_token(WRITER), scopes=["write"]),
    ApiToken(name="admin", hash=hash_token(ADMIN), scopes=["read", "write"]),
]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_settings(url: str, **api: Any) -> Settings:
    api.setdefault("tokens", TOKENS)
    return Settings(database=DatabaseSettings(url=url), api=ApiSettings(**api))


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    """A client of the app (lean look-ups on), with no default token."""
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def app_client(store: Store) -> Iterator[Callable[..., TestClient]]:
    """Build clients of apps with other API settings (or lean look-ups off) on the test's store."""
    made: list[TestClient] = []

    def factory(*, lean_lookups: bool = True, **api: Any) -> TestClient:
        settings = make_settings(store.engine.url.render_as_string(hide_password=False), **api)
        test_client = TestClient(create_app(settings, store, lean_lookups=lean_lookups),
                                 raise_server_exceptions=False)
        test_client.__enter__()
        made.append(test_client)
        return test_client

    yield factory
    for test_client in made:
        test_client.__exit__(None, None, None)


@dataclass
class RunningServer:
    base_url: str
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    errors: list[BaseException]

    def shutdown(self, timeout: float = 10) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "serve() did not return after stop was set"


def start_server(settings: Settings, store: Store) -> RunningServer:
    """``processor.api.serve`` under uvicorn on a free loopback port, in a thread of its own."""
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    ready = threading.Event()
    holder: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        holder["stop"] = stop = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(serve(settings, store, stop, sock=sock))
        except BaseException as exc:
            errors.append(exc)
        finally:
            sock.close()
            loop.close()

    thread = threading.Thread(target=run, name="api-server", daemon=True)
    thread.start()
    ready.wait(5)
    server = RunningServer(f"http://127.0.0.1:{port}", thread, holder["loop"], holder["stop"], errors)
    import httpx

    for _ in range(100):
        try:
            httpx.get(f"{server.base_url}/healthz", timeout=1)
            break
        except httpx.TransportError:
            threading.Event().wait(0.05)
    return server


@pytest.fixture
def live_server(settings: Settings, store: Store) -> Iterator[RunningServer]:
    """The API served by uvicorn (``serve``) on a free loopback port, stopped at the end."""
    server = start_server(settings, store)
    try:
        yield server
    finally:
        server.shutdown()
    assert not server.errors, server.errors
