"""An HTTP endpoint standing in for listmonk or an operator's application: it records every
request it gets (headers and body) and answers as the test says (fail the first N, be slow)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    authorization: str
    body: bytes
    status: int


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    fail_always: bool = False
    delay_seconds: float = 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.delivered()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"expected {count} deliveries, got {len(self.delivered())}: {self.requests}")


@contextmanager
def receiver(**behaviour: Any) -> Iterator[Receiver]:
    """A receiver on a free loopback port, stopped at the end."""
    state = Receiver("", **behaviour)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            with state.lock:
                failing = state.fail_always or len(state.requests) < state.fail_first
                status = 503 if failing else 200
                state.requests.append(Received(self.headers.get("webhook-id", ""),
                                               self.headers.get("webhook-timestamp", ""),
                                               self.headers.get("webhook-signature", ""),
                                               self.headers.get("authorization", ""), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
