"""serve() inside an event loop, and the ``bounce-processor api`` command as a real process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from processor.api.auth import hash_token
from processor.api.server import ApiStartError, bind_socket
from processor.config import Settings
from processor.store import Store
from tests.api.conftest import ADMIN, READER, RunningServer, auth, make_settings, start_server
from tests.conftest import PROJECT


def test_serve_stops_when_told(settings: Settings, store: Store) -> None:
    """serve() answers over TCP until its stop event is set, then returns promptly, store open."""
    server = start_server(settings, store)
    try:
        response = httpx.get(f"{server.base_url}/v1/suppressions/a@example.org", headers=auth(READER))
        assert response.status_code == 404
    finally:
        started = time.monotonic()
        server.shutdown()
        assert time.monotonic() - started < 7
    assert not server.errors
    assert store.is_suppressed("a@example.org") is None


def test_busy_port_is_a_clear_error() -> None:
    """A port already in use is an ApiStartError naming it."""
    taken = bind_socket("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ApiStartError, match=re.escape(f"cannot listen on 127.0.0.1:{port}")):
            bind_socket("127.0.0.1", port)
    finally:
        taken.close()


def test_serve_refuses_an_exposed_open_api(db_url: str, store: Store) -> None:
    """serve() refuses a non-loopback address when no tokens are configured."""
    import asyncio

    from processor.api.server import serve

    settings = make_settings(db_url, tokens=[], host="0.0.0.0")
    with pytest.raises(ApiStartError, match=r"no api\.tokens"):
        asyncio.run(serve(settings, store, asyncio.Event()))


def _run_command(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, **(env or {})}
    environment.pop("BOUNCE_PROCESSOR_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "processor", "--log-format", "json", "api", *args,
         "--database", f"sqlite:///{tmp_path / 'cmd.db'}"],
        cwd=PROJECT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_api_command_serves_and_exits_on_sigterm(tmp_path: Path) -> None:
    """`bounce-processor api` says it runs without tokens on loopback, serves, and exits 0 on SIGTERM."""
    port = _free_port()
    process = _run_command(tmp_path, "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        assert httpx.put(f"http://127.0.0.1:{port}/v1/suppressions/z@example.org").status_code == 201
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert '"event": "api.unauthenticated"' in err and "loopback" in err
    assert '"event": "api.stopped"' in err


def test_api_command_refuses_open_public_listen(tmp_path: Path) -> None:
    """Without tokens, `bounce-processor api --host 0.0.0.0` fails with a one-line error, exit 2."""
    process = _run_command(tmp_path, "--host", "0.0.0.0", "--port", "0")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert err.strip().splitlines()[-1].startswith("bounce-processor: error: api.host is '0.0.0.0'")
    assert "Traceback" not in err


def test_api_command_with_tokens_from_the_environment(tmp_path: Path) -> None:
    """Tokens from BOUNCE_API__TOKENS are honoured, and the command logs their names, not them."""
    port = _free_port()
    token = "bp_environment-token-for-the-command-test-000000"
    tokens = f'[{{"name": "sender", "hash": "{hash_token(token)}", "scopes": ["read"]}}]'
    process = _run_command(tmp_path, "--port", str(port), env={"BOUNCE_API__TOKENS": tokens})
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/v1/suppressions/a@example.org"
        assert httpx.get(base).status_code == 401
        assert httpx.get(base, headers=auth(token)).status_code == 404
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert '"sender"' in err and token not in err and "api.unauthenticated" not in err


def test_new_token_command() -> None:
    """`bounce-processor api new-token` prints a token and the configuration entry with its hash."""
    result = subprocess.run([sys.executable, "-m", "processor", "api", "new-token", "mailer", "--scope", "write",
                             "--scope", "read"], cwd=PROJECT, capture_output=True, text=True, check=True)
    token = result.stdout.split(": ", 1)[1].splitlines()[0].strip()
    assert f'hash = "{hash_token(token)}"' in result.stdout
    assert 'scopes = ["read", "write"]' in result.stdout and 'name = "mailer"' in result.stdout


def test_api_service_for_the_daemon(db_url: str) -> None:
    """api_service(settings, stop), the daemon's service hook, serves on its own store until stop."""
    import asyncio

    from processor.api.server import api_service

    port = _free_port()
    settings = make_settings(db_url, port=port)

    async def scenario() -> list[int]:
        stop = asyncio.Event()
        task = asyncio.ensure_future(api_service(settings, stop))
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    statuses.append((await client.get("/readyz")).status_code)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            statuses.append((await client.put("/v1/suppressions/svc@example.org", headers=auth(READER))).status_code)
        stop.set()
        await asyncio.wait_for(task, 10)
        return statuses

    assert asyncio.run(scenario()) == [200, 403]
    disabled = make_settings(db_url, enabled=False, port=port)
    asyncio.run(asyncio.wait_for(api_service(disabled, asyncio.Event()), 5))


def test_import_streams_through_the_real_server(live_server: RunningServer, store: Store) -> None:
    """An import sent in chunks to the uvicorn server is read line by line into the store."""
    def body() -> Iterator[bytes]:
        yield b"email,reason\n"
        for i in range(5000):
            yield f"stream{i}@example.org,r\n".encode()

    response = httpx.post(f"{live_server.base_url}/v1/suppressions/import", content=body(),
                          headers={**auth(ADMIN), "content-type": "text/csv"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 5000
    assert store.is_suppressed("stream4999@example.org") is not None


def _half_open(base_url: str, count: int) -> list[socket.socket]:
    """``count`` connections that each send the start of a request and never finish its headers."""
    host, port = base_url.removeprefix("http://").split(":")
    opened = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        opened.append(sock)
    return opened


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes the connection before the monotonic ``deadline``."""
    try:
        while True:  # what is left of an earlier answer comes first
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            if sock.recv(4096) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_unfinished_request_heads_are_closed(db_url: str, store: Store) -> None:
    """Connections whose request head is not finished within api.header_timeout_seconds are
    closed (on a fresh connection and on a kept-alive one), and complete requests still work."""
    server = start_server(make_settings(db_url, header_timeout_seconds=1.0), store)
    try:
        slow = _half_open(server.base_url, 50)
        host, port = server.base_url.removeprefix("http://").split(":")
        kept = socket.create_connection((host, int(port)), timeout=30)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 200 ")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the next request, never finished
        deadline = time.monotonic() + 30
        assert [_closed_by_server(sock, deadline) for sock in [*slow, kept]] == [True] * 51
        kept.close()
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200
        for sock in slow:
            sock.close()
    finally:
        server.shutdown()
    assert not server.errors


def test_connection_limit_answers_503(db_url: str, store: Store) -> None:
    """Beyond api.max_connections open connections, a request is answered 503 at once (not queued)."""
    server = start_server(make_settings(db_url, max_connections=20, header_timeout_seconds=60), store)
    try:
        slow = _half_open(server.base_url, 20)
        response = httpx.get(f"{server.base_url}/healthz", timeout=10)
        assert response.status_code == 503
        for sock in slow:
            sock.close()
        deadline = time.monotonic() + 30
        while (status := httpx.get(f"{server.base_url}/healthz", timeout=10).status_code) != 200:
            assert time.monotonic() < deadline, "the limit was not lifted once the connections closed"
            time.sleep(0.05)
        assert status == 200
    finally:
        server.shutdown()
    assert not server.errors
