"""processor.client against the API served by uvicorn (serve()) on a loopback port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from processor.api.server import bind_socket
from processor.client import (
    ApiError,
    AsyncSuppressionClient,
    AuthError,
    InvalidAddress,
    ServiceUnavailable,
    SuppressionClient,
)
from processor.config import Settings
from processor.store import Store
from tests.api.conftest import ADMIN, READER, RunningServer, make_settings, start_server


@pytest.fixture
def admin(live_server: RunningServer) -> Iterator[SuppressionClient]:
    with SuppressionClient(live_server.base_url, ADMIN) as client:
        yield client


def test_sender_workflow(admin: SuppressionClient, store: Store) -> None:
    """is_suppressed, lookup, filter_allowed, suppress, unsuppress and history work end to end."""
    store.add("bounced@example.org", reason="userunknown", bounce_type="hard")
    assert admin.is_suppressed("Bounced@Example.org") is True
    assert admin.is_suppressed("fine@example.org") is False
    entry = admin.lookup("bounced@example.org")
    assert entry is not None and (entry.reason, entry.bounce_type, entry.expires_at) == ("userunknown", "hard", None)
    assert admin.lookup("fine@example.org") is None
    recipients = ["fine@example.org", "bounced@example.org", "broken address", "other@example.org"]
    assert admin.filter_allowed(recipients) == ["fine@example.org", "other@example.org"]
    added = admin.suppress("other@example.org", "asked to stop", note="ticket 7", ttl_days=30)
    assert (added.address, added.reason, added.note) == ("other@example.org", "asked to stop", "ticket 7")
    assert added.expires_at is not None
    assert admin.filter_allowed(recipients) == ["fine@example.org"]
    assert admin.unsuppress("other@example.org", note="mistake") is True
    assert admin.unsuppress("other@example.org") is False
    assert [e["kind"] for e in admin.history("other@example.org")] == ["manual_remove", "manual_remove", "manual_add"]
    result = admin.check(recipients)
    assert set(result.suppressed) == {"bounced@example.org"} and set(result.invalid) == {"broken address"}


def test_addresses_with_special_characters(admin: SuppressionClient) -> None:
    """Addresses with / + % ? # in the local part travel safely in the path."""
    for address in ("a/b@example.org", "c+tag@example.org", "d%e@example.org", "f?g@example.org", "h#i@example.org"):
        admin.suppress(address)
        assert admin.is_suppressed(address), address
        assert admin.lookup(address) is not None, address
        assert admin.unsuppress(address), address


def test_batches_are_split_to_the_servers_limit(settings: Settings, store: Store) -> None:
    """filter_allowed sends batch_size addresses per request: a server limit of 3 is respected."""
    small = make_settings(str(store.engine.url.render_as_string(hide_password=False)), batch_limit=3)
    server = start_server(small, store)
    try:
        store.add("x4@example.org")
        addresses = [f"x{i}@example.org" for i in range(10)]
        with SuppressionClient(server.base_url, READER) as unbatched:
            with pytest.raises(ApiError) as caught:
                unbatched.filter_allowed(addresses)
            assert caught.value.status == 413
        with SuppressionClient(server.base_url, READER, batch_size=3) as client:
            assert client.filter_allowed(addresses) == [a for a in addresses if a != "x4@example.org"]
    finally:
        server.shutdown()


def test_refusals_are_typed(live_server: RunningServer) -> None:
    """A malformed address is InvalidAddress naming the problem; a bad or weak token is AuthError."""
    with SuppressionClient(live_server.base_url, ADMIN) as client:
        with pytest.raises(InvalidAddress, match="no '@' in the address"):
            client.is_suppressed("not-an-address")
        with pytest.raises(InvalidAddress, match="empty domain"):
            client.suppress("user@")
    secret = "bp_wrong-token-value-for-this-test"
    with SuppressionClient(live_server.base_url, secret) as client:
        with pytest.raises(AuthError) as caught:
            client.is_suppressed("a@example.org")
        assert caught.value.status == 401
        assert secret not in str(caught.value) and secret not in repr(client)
    with SuppressionClient(live_server.base_url, READER) as client, pytest.raises(AuthError) as forbidden:
        client.suppress("a@example.org")
    assert forbidden.value.status == 403


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_service_down_raises_service_unavailable() -> None:
    """Nothing listening: every call, filter_allowed included, raises ServiceUnavailable (never a
    quietly empty or full list), so the caller picks fail open or fail closed."""
    recipients = ["a@example.org", "b@example.org"]
    with SuppressionClient(f"http://127.0.0.1:{_closed_port()}", READER, timeout=1) as client:
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            client.is_suppressed("a@example.org")
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            client.filter_allowed(recipients)
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            client.check(recipients)


def test_slow_service_times_out() -> None:
    """A service that accepts but never answers is ServiceUnavailable after the timeout."""
    listener = bind_socket("127.0.0.1", 0)
    listener.setblocking(True)
    port = listener.getsockname()[1]
    try:
        with SuppressionClient(f"http://127.0.0.1:{port}", READER, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable, match="timed out"):
                client.is_suppressed("a@example.org")
            assert time.monotonic() - started < 3
    finally:
        listener.close()


def test_database_down_is_service_unavailable(db_url: str, tmp_path: object) -> None:
    """A 503 from the API (database unreachable) is ServiceUnavailable too."""
    from processor.config import DatabaseSettings
    from processor.store import create_store_engine

    settings = Settings(database=DatabaseSettings(url="postgresql+psycopg://postgres@127.0.0.1:9/x"))
    broken = Store(create_store_engine(settings.database), settings)
    server = start_server(make_settings(str(broken.engine.url)), broken)
    try:
        with SuppressionClient(server.base_url, READER) as client, pytest.raises(ServiceUnavailable, match="503"):
            client.filter_allowed(["a@example.org"])
    finally:
        server.shutdown()
        broken.close()


def test_async_client(live_server: RunningServer, store: Store) -> None:
    """AsyncSuppressionClient offers the same calls as coroutines."""
    store.add("async@example.org")

    async def scenario() -> None:
        async with AsyncSuppressionClient(live_server.base_url, ADMIN) as client:
            assert await client.is_suppressed("async@example.org")
            assert await client.filter_allowed(["async@example.org", "ok@example.org"]) == ["ok@example.org"]
            await client.suppress("ok@example.org", "manual")
            assert (await client.lookup("ok@example.org")) is not None
            assert await client.unsuppress("ok@example.org")
            assert len(await client.history("ok@example.org")) == 2
            with pytest.raises(InvalidAddress):
                await client.is_suppressed("nope")
        async with AsyncSuppressionClient(f"http://127.0.0.1:{_closed_port()}", timeout=1) as down:
            with pytest.raises(ServiceUnavailable):
                await down.is_suppressed("async@example.org")

    asyncio.run(scenario())
