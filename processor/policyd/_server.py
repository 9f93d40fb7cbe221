"""The policy service's life cycle: listen (TCP or UNIX socket), answer, keep the list current.

    server = PolicyServer(settings)
    await server.start()        # first load of the list, then listen
    await server.serve_forever()  # until server.stop() (SIGTERM/SIGINT in ``run``)

``run(settings)`` is what ``bounce-processor policyd`` calls: it adds the signal handlers
(SIGTERM/SIGINT stop, SIGHUP reads the whole list again) and the optional /metrics endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from processor import metrics
from processor.addresses import AddressError, normalise_address
from processor.policyd._answers import DUNNO, Answerer, Hit
from processor.policyd._lookup import Lookup, MemoryLookup, QueryLookup, StoreUnavailable
from processor.policyd._protocol import PolicyConnection

if TYPE_CHECKING:
    from processor.config import Settings

__all__ = ["Listen", "ListenError", "PolicyServer", "parse_listen", "run"]

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 1.0


class ListenError(ValueError):
    """The listen address cannot be used (the message says why)."""


@dataclass(frozen=True, slots=True)
class Listen:
    """Where to listen: a TCP host and port, or a UNIX socket path."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """``inet:HOST:PORT`` (``inet:[::1]:PORT`` for IPv6), ``HOST:PORT``, or ``unix:/path``."""
    kind, sep, rest = value.partition(":")
    if kind == "unix" and sep:
        if not rest:
            raise ListenError("unix: needs a socket path")
        return Listen(path=rest)
    if kind != "inet" or not sep:
        rest = value
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ListenError(f"invalid listen address {value!r}: expected inet:HOST:PORT or unix:/path")
    return Listen(host=host, port=int(port))


def _log_answer(hit: Hit, address: str, request: dict[str, str]) -> None:
    log.info(
        "policyd.answer",
        answer=hit.verdict,
        recipient=address,
        scope=hit.scope,
        source=hit.source,
        reason=hit.reason,
        bounce_type=hit.bounce_type,
        sender=request.get("sender", ""),
        client=request.get("client_address", ""),
        queue_id=request.get("queue_id", ""),
    )


class PolicyServer:
    """The policy service (see the module docstring)."""

    def __init__(self, settings: Settings, *, listen: str | None = None) -> None:
        self.settings = settings
        self.policyd = settings.policyd
        self.listen = parse_listen(listen or self.policyd.listen)
        self.answerer = Answerer(self.policyd)
        lookup = MemoryLookup if self.policyd.mode == "memory" else QueryLookup
        self.lookup: Lookup = lookup(settings, self.answerer)
        self.connections: set[PolicyConnection] = set()
        self._lowercase_local = settings.database.lowercase_local_part
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._log_answers = self.policyd.log_answers
        self._loop: asyncio.AbstractEventLoop | None = None
        counter = metrics.POLICY_REQUESTS
        self._count = {name: counter.labels(answer=name).inc for name in ("REJECT", "DEFER", "DUNNO", "error")}

    # -- answering -------------------------------------------------------------------------

    def answer(self, request: dict[str, str]) -> bytes:
        """The answer to one well-formed request. Never raises: a failure of our own is logged
        and answered as an unreachable store would be (``on_store_error``)."""
        try:
            return self._answer(request)
        except Exception as exc:
            log.error("policyd.internal_error", error=f"{type(exc).__name__}: {exc}",
                      recipient=request.get("recipient", "")[:200], answer=self.answerer.store_error_verdict,
                      exc_info=True)
            self._count["error"]()
            return self.answerer.store_error_answer

    def _answer(self, request: dict[str, str]) -> bytes:
        state = request.get("protocol_state", "RCPT")
        recipient = request.get("recipient", "")
        if not recipient or state.upper() != "RCPT":
            self._count["DUNNO"]()
            return DUNNO
        try:
            address = normalise_address(recipient, lowercase_local=self._lowercase_local)
        except AddressError:
            self._count["DUNNO"]()
            return DUNNO
        scope = self.answerer.scope_for(request.get("client_address", ""), request.get("sender", ""))
        try:
            hit = self.lookup.find(address, scope, time.time())
        except StoreUnavailable:
            verdict = self.answerer.store_error_verdict
            self._count[verdict]()
            return self.answerer.store_error_answer
        if hit is None:
            self._count["DUNNO"]()
            return DUNNO
        self._count[hit.verdict]()
        if self._log_answers and hit.verdict != "DUNNO":
            if self._loop is not None:  # after the answer is written (a log line costs ~35 us)
                self._loop.call_soon(_log_answer, hit, address, request)
            else:
                _log_answer(hit, address, request)
        return hit.answer

    def _malformed(self, connection: PolicyConnection, reason: str) -> None:
        self._count["error"]()
        log.warning("policyd.malformed_request", peer=connection.peer, error=reason, action="connection closed")

    def _protocol(self) -> PolicyConnection:
        return PolicyConnection(self.answer, self._malformed, self.policyd.max_request_bytes, self.connections)

    # -- life cycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port listened on (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            return 0
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Read the list (or note that the store is unreachable), then listen."""
        loop = self._loop = asyncio.get_running_loop()
        await self.lookup.start()
        if self.listen.path:
            path = Path(self.listen.path)
            _remove_stale_socket(path)
            gid = _group_id(self.policyd.socket_group)
            self._server = await loop.create_unix_server(self._protocol, path=str(path))
            _restrict_socket(path, self.policyd.socket_mode, gid)
        else:
            self._server = await loop.create_server(
                self._protocol, self.listen.host, self.listen.port, reuse_address=True, backlog=512
            )
        self._tasks = [
            asyncio.create_task(self.lookup.run(), name="policyd-refresh"),
            asyncio.create_task(self._sweep(), name="policyd-sweep"),
        ]
        shown = self.listen if self.listen.path or self.listen.port else f"inet:{self.listen.host}:{self.port}"
        log.info("policyd.listening", listen=str(shown), mode=self.policyd.mode, entries=self.lookup.size,
                 on_store_error=self.policyd.on_store_error)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop listening, close every connection, stop the background tasks."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self.listen.path:
            with contextlib.suppress(OSError):
                Path(self.listen.path).unlink()
        await asyncio.to_thread(self.lookup.close)
        self._stopped.set()
        log.info("policyd.stopped")

    async def _sweep(self) -> None:
        """Close connections with a request unfinished too long, or idle too long."""
        request_timeout = self.policyd.request_timeout_seconds
        idle_timeout = self.policyd.idle_timeout_seconds
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            for connection in list(self.connections):
                started = connection.request_started
                if started is not None and now - started > request_timeout:
                    connection.timeout(f"request not finished after {request_timeout:g}s")
                elif now - connection.last_activity > idle_timeout and connection.transport is not None:
                    log.debug("policyd.idle_closed", peer=connection.peer)
                    connection.transport.close()


def _group_id(group: str) -> int | None:
    """The numeric id of the socket's group (a name or a number); None: leave the group as it is."""
    if not group:
        return None
    if group.isdigit():
        return int(group)
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ListenError(f"policyd.socket_group {group!r} is not a group on this system") from None


def _restrict_socket(path: Path, mode: int, gid: int | None) -> None:
    """Give the new socket its group first, then its mode (so it is never wider than configured
    for the group it ends up with)."""
    try:
        if gid is not None:
            os.chown(path, -1, gid)
        path.chmod(mode)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ListenError(f"cannot set the group or mode of {path}: {exc.strerror}") from None


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a previous run; refuse to replace a live one or another file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise ListenError(f"another process listens on {path}")


def _start_metrics(listen: str) -> None:
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"))
    log.info("policyd.metrics", listen=listen)


async def _main(settings: Settings, listen: str | None) -> None:
    server = PolicyServer(settings, listen=listen)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop(name: str) -> None:
        if not stopping:
            log.info("policyd.signal", signal=name)
            stopping.append(asyncio.create_task(server.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, server.lookup.request_reload)
    if settings.policyd.metrics_listen:
        _start_metrics(settings.policyd.metrics_listen)
    await server.start()
    await server.serve_forever()


def run(settings: Settings, *, listen: str | None = None) -> None:
    """Run the service until SIGTERM/SIGINT. ListenError or OSError when it cannot listen."""
    asyncio.run(_main(settings, listen))
