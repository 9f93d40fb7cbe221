"""Helpers for the policy service's tests: real sockets, a real server in a thread of the test
process or the real CLI in a subprocess, throwaway PostgreSQL databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from processor.config import DatabaseSettings, PolicydSettings, Settings
from processor.policyd import PolicyServer
from tests.conftest import PROJECT


def make_settings(db_url: str, **policyd: Any) -> Settings:
    return Settings(database=DatabaseSettings(url=db_url), policyd=PolicydSettings(**policyd))


def request_bytes(recipient: str = "", **attributes: str) -> bytes:
    """One policy request as Postfix's smtpd sends it at RCPT TO."""
    attrs = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": "192.0.2.10",
        "client_name": "client.example.org",
        "helo_name": "client.example.org",
        "sender": "news@sender.example",
        "recipient": recipient,
        "recipient_count": "0",
        "queue_id": "",
        "instance": "123.456.7",
        "size": "1234",
        **attributes,
    }
    return "".join(f"{name}={value}\n" for name, value in attrs.items()).encode() + b"\n"


class Client:
    """A policy client on a real socket (TCP port or UNIX socket path)."""

    def __init__(self, where: int | str, timeout: float = 10.0) -> None:
        if isinstance(where, int):
            self.sock = socket.create_connection(("127.0.0.1", where), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(where)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answers(self, count: int) -> list[str]:
        """The next ``count`` answers (the action values)."""
        out: list[str] = []
        while len(out) < count:
            end = self._buffer.find(b"\n\n")
            if end >= 0:
                block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                assert block.startswith(b"action="), block
                out.append(block[len(b"action=") :].decode())
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server after {len(out)} answers")
            self._buffer += chunk
        return out

    def ask(self, recipient: str, **attributes: str) -> str:
        self.send(request_bytes(recipient, **attributes))
        return self.answers(1)[0]

    def closed_by_server(self) -> bool:
        """True when the server closed the connection (after any answers already buffered)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self._buffer += chunk
        except (TimeoutError, ConnectionResetError):
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadServer:
    """A PolicyServer running on its own event loop in a thread of the test process."""

    def __init__(self, settings: Settings, listen: str = "inet:127.0.0.1:0") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="policyd-test", daemon=True)
        self.server = PolicyServer(settings, listen=listen)

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        try:
            self.call(self.server.start())
        except BaseException:
            self._shutdown()
            raise
        return self

    @property
    def port(self) -> int:
        return self.server.port

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.server.listen.path or self.port, timeout)

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.call(self.server.stop())
        self._shutdown()

    def _shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def refreshes_pass(lookup: Any, count: int = 2, timeout: float = 30.0) -> None:
    """Block until ``count`` refreshes of the in-memory copy have completed after this call (so
    at least one of them read the store after it); fail if they do not come."""
    for _ in range(count):
        seen = lookup._fresh_at
        assert wait_until(lambda seen=seen: lookup._fresh_at > seen, timeout), "no refresh of the list ran"


# --------------------------------------------------------------------------- databases


# --------------------------------------------------------------------------- the real CLI


class PolicydProcess:
    """``bounce-processor policyd`` in a subprocess, its JSON log lines in a file."""

    def __init__(self, config: Path, listen: str, log: Path) -> None:
        self.listen = listen
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processor", "--config", str(config), "--log-format", "json",
             "policyd", "--listen", listen],
            cwd=PROJECT, stdout=self._out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_listening(self, timeout: float = 30.0) -> None:
        if not wait_until(lambda: any(e.get("event") == "policyd.listening" for e in self.events())
                          or self.proc.poll() is not None, timeout):
            raise AssertionError(f"policyd did not start:\n{self.log.read_text()}")
        if self.proc.poll() is not None:
            raise AssertionError(f"policyd exited {self.proc.returncode}:\n{self.log.read_text()}")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        return self.proc.returncode


def write_config(path: Path, db_url: str, policyd: dict[str, Any]) -> Path:
    """A TOML configuration with the database URL and a [policyd] section."""
    lines = ["[database]", f"url = {json.dumps(db_url)}", "", "[policyd]"]
    tables: list[str] = []
    for name, value in policyd.items():
        if isinstance(value, dict):
            tables += ["", f"[policyd.{name}]"] + [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()]
        else:
            lines.append(f"{name} = {json.dumps(value)}")
    path.write_text("\n".join(lines + tables) + "\n")
    return path


