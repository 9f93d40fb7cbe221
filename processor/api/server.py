"""Serving the API with uvicorn, inside ``bounce-processor run`` or alone (``bounce-processor api``).

    stop = asyncio.Event()
    await serve(settings, store, stop)     # returns once stop is set and requests in hand are done

The caller owns the signals (uvicorn's own handlers are not installed) and the store. The socket
is bound before uvicorn starts, so a busy port is an ApiStartError naming it, not an exit.

``api_service(settings, stop)`` has the daemon's ExtraService shape (processor.daemon): it opens
a store of its own, serves while ``settings.api.enabled``, and closes the store at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from processor.config import ApiSettings, Settings
from processor.metrics import API_HEADER_TIMEOUTS
from processor.store import Store

__all__ = [
    "ApiStartError", "api_service", "bind_socket", "check_exposure", "header_deadline_protocol", "is_loopback",
    "serve",
]

log = structlog.get_logger(__name__)

GRACEFUL_SECONDS = 5
"""Requests in hand get this long to finish after stop (the daemon must exit within 10 s)."""


class ApiStartError(Exception):
    """The API cannot start (unsafe configuration, or the address cannot be bound); says why."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(api: ApiSettings) -> None:
    """Without tokens the API may only listen on a loopback address."""
    if not api.tokens and not is_loopback(api.host):
        raise ApiStartError(
            f"api.host is {api.host!r} but no api.tokens are configured: without tokens the API may only listen "
            "on a loopback address (127.0.0.1, ::1, localhost). Add a token (`bounce-processor api new-token NAME`) "
            "or listen on 127.0.0.1."
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one; see ``getsockname()``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ApiStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def header_deadline_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's head: a client that opens
    a connection, or begins a request, and does not finish its headers within ``seconds`` is
    disconnected (uvicorn alone would wait for ever, one socket and buffer per such client)."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm_header_deadline()

        def on_headers_complete(self) -> None:
            self._disarm_header_deadline()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_deadline()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            self._header_timer = self.loop.call_later(seconds, self._header_deadline_passed)

        def _disarm_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_deadline_passed(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                API_HEADER_TIMEOUTS.inc()
                self.transport.close()

    return HeaderDeadlineProtocol


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the daemon (or the api command) owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: object, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=15,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        http=header_deadline_protocol(settings.api.header_timeout_seconds),
        limit_concurrency=settings.api.max_connections,
    )


async def serve(settings: Settings, store: Store, stop: asyncio.Event, *, sock: socket.socket | None = None) -> None:
    """Serve the API on ``settings.api.host``/``port`` (or on ``sock``, already bound) until ``stop``
    is set. ApiStartError when it cannot start; never closes ``store``."""
    from processor.api.app import create_app

    api = settings.api
    check_exposure(api)
    listener = sock if sock is not None else bind_socket(api.host, api.port)
    host, port = listener.getsockname()[:2]
    app = create_app(settings, store)
    server = _Server(_config(app, settings))
    log.info("api.listening", url=f"http://{host if ':' not in host else f'[{host}]'}:{port}",
             auth="tokens" if api.tokens else "none", tokens=[t.name for t in api.tokens])
    if not api.tokens:
        log.warning("api.unauthenticated",
                    message=f"no api.tokens configured: anyone who can connect to {host}:{port} may read and change "
                            "the suppression list (allowed on a loopback address only)")
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        finally:
            if sock is None:
                listener.close()
    log.info("api.stopped")


async def api_service(settings: Settings, stop: asyncio.Event) -> None:
    """The API as one of ``bounce-processor run``'s services: its own store, served until ``stop``."""
    if not settings.api.enabled:
        return
    check_exposure(settings.api)
    from processor.store import open_store

    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(None, open_store, settings)
    try:
        await serve(settings, store, stop)
    finally:
        store.close()
