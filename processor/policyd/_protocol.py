"""Postfix's policy delegation protocol (SMTPD_POLICY_README), one request at a time.

A request is ``name=value`` lines ending with an empty line; the answer is ``action=...`` and an
empty line. A client may keep the connection open for many requests and may send the next one
before it has read the previous answer (pipelining): answers go out in order.

Anything else is malformed: a line without ``=``, bytes that are not UTF-8, a request without
``request=smtpd_access_policy``, a request larger than ``max_request_bytes``. The connection is
then closed with one clear log line (answers to the complete requests before it are sent first);
the service itself carries on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PolicyConnection", "ProtocolError", "parse_request"]

REQUEST_TYPE = "smtpd_access_policy"
_END = b"\n\n"


class ProtocolError(ValueError):
    """A malformed request; the message says what was wrong with it."""


def _excerpt(text: str | bytes, limit: int = 60) -> str:
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


def parse_request(raw: bytes) -> dict[str, str]:
    """The attributes of one request (without its final empty line); ProtocolError if malformed.

    Unknown attributes are kept (Postfix adds new ones over time); a repeated one keeps its last value.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"request is not UTF-8 (byte {exc.start}: {_excerpt(raw[exc.start:], 16)})") from None
    attributes: dict[str, str] = {}
    for line in text.split("\n"):
        name, sep, value = line.partition("=")
        if not sep or not name:
            raise ProtocolError(f"line is not name=value: {_excerpt(line)}")
        attributes[name] = value
    request = attributes.get("request")
    if request != REQUEST_TYPE:
        if request is None:
            raise ProtocolError("request has no request= attribute")
        raise ProtocolError(f"unknown request type {_excerpt(request)} (expected {REQUEST_TYPE})")
    return attributes


Answer = Callable[[dict[str, str]], bytes]
Malformed = Callable[["PolicyConnection", str], None]


class PolicyConnection(asyncio.Protocol):
    """One client connection. ``answer`` maps a parsed request to the bytes to send back."""

    __slots__ = ("_answer", "_buffer", "_closing", "_limit", "_malformed", "_registry", "last_activity",
                 "peer", "request_started", "transport")

    def __init__(
        self, answer: Answer, malformed: Malformed, limit: int, registry: set[PolicyConnection]
    ) -> None:
        self._answer = answer
        self._malformed = malformed
        self._limit = limit
        self._registry = registry
        self._buffer = b""
        self._closing = False
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.last_activity = time.monotonic()
        self.request_started: float | None = None
        """monotonic() when the unfinished request in the buffer began (None: none)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer: Any = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else (peer or "unix")
        self._registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        now = time.monotonic()
        self.last_activity = now
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")  # a person typing into telnet; Postfix sends LF
        out: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(_END, start)
            if end < 0:
                break
            if end - start > self._limit:
                break
            try:
                out.append(self._answer(parse_request(buffer[start:end])))
            except ProtocolError as exc:
                self._fail(out, str(exc))
                return
            start = end + 2
        rest = buffer[start:] if start else buffer
        if rest.startswith(b"\n"):
            self._fail(out, "empty line outside a request")
            return
        if len(rest) > self._limit and rest.find(_END, 0, self._limit + 2) < 0:
            self._fail(out, f"request longer than {self._limit} bytes")
            return
        self._buffer = rest
        if not rest:
            self.request_started = None
        elif start or self.request_started is None:  # a new request began in this data
            self.request_started = now
        if out:
            assert self.transport is not None
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _fail(self, answers: list[bytes], reason: str) -> None:
        self._closing = True
        self._buffer = b""
        transport = self.transport
        if transport is None:
            return
        if answers:
            transport.write(b"".join(answers))
        self._malformed(self, reason)
        transport.close()

    def timeout(self, reason: str) -> None:
        """Close the connection (called by the server's sweeper)."""
        self._fail([], reason)

    def eof_received(self) -> bool | None:
        if self._buffer.strip():
            self._fail([], f"connection closed in the middle of a request ({len(self._buffer)} bytes)")
        return None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()
