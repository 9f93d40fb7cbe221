"""Builders for the daemon's tests: genuine bounces made unique, TOML configurations, the daemon
as a real subprocess with its JSON log lines, and a TCP proxy that can cut a database off."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.conftest import PROJECT, SAMPLES

UNKNOWN_USER = SAMPLES / "generated/postfix/postfix-local-unknown-user.eml"
UNKNOWN_RECIPIENT = b"nosuchuser@local.example.net"


def bounce_for(recipient: str) -> bytes:
    """A genuine Postfix DSN (unknown user: a hard bounce) for ``recipient``@local.example.net."""
    local = recipient.partition("@")[0].encode()
    return UNKNOWN_USER.read_bytes().replace(b"nosuchuser", local)


def bounces(count: int, prefix: str = "gone") -> list[bytes]:
    """``count`` distinct hard bounces (recipients prefix0..prefixN@local.example.net)."""
    return [bounce_for(f"{prefix}{i}@local.example.net") for i in range(count)]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """A TOML file from {"section.sub": {key: value}} (enough for our settings)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def imap_box(dovecot: Any, user: Any, **overrides: Any) -> dict[str, Any]:
    """Mailbox settings for a Dovecot user over STARTTLS, verified against the test CA."""
    box: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": dovecot.imap_port,
        "tls": "starttls",
        "ca_file": str(dovecot.ca_file),
        "username": user.name,
        "password": user.password,
        "poll_interval_seconds": 30.0,
        "batch_size": 50,
        "connect_timeout_seconds": 5.0,
        "command_timeout_seconds": 10.0,
        "backoff_initial_seconds": 0.2,
        "backoff_max_seconds": 2.0,
    }
    box.update(overrides)
    return box


class DaemonProcess:
    """``bounce-processor --log-format json run`` as a child process; its log lines are parsed."""

    def __init__(self, config: Path, *args: str, log_level: str = "INFO", env: Mapping[str, str] | None = None,
                 log_format: str = "json") -> None:
        self.log_path = config.parent / f"daemon-{os.getpid()}-{time.monotonic_ns()}.log"
        self._out = self.log_path.open("wb")
        environment = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(config), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processor", "--log-format", log_format, "--log-level", log_level, "run", *args],
            cwd=str(config.parent), stdout=self._out, stderr=subprocess.STDOUT, env=environment,
        )

    def text(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def wait_for(self, check: Callable[[DaemonProcess], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not check(self):
            if self.proc.poll() is not None and not check(self):
                raise AssertionError(f"daemon exited {self.proc.returncode} before {what}:\n{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.text()[-4000:]}")
            time.sleep(0.05)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"daemon still running after {timeout}s:\n{self.text()[-4000:]}") from None

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


def run_once(
    config: Path, *extra: str, timeout: float = 120.0, log_level: str = "INFO", env: Mapping[str, str] | None = None
) -> DaemonProcess:
    """``run --once`` to completion."""
    daemon = DaemonProcess(config, "--once", *extra, log_level=log_level, env=env)
    daemon.wait(timeout)
    daemon.close()
    return daemon


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Another bounce-processor command with the same configuration."""
    env = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "processor", *args], cwd=str(config.parent), env=env,
                          capture_output=True, text=True, timeout=60, check=False)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``down()`` cuts every connection and refuses new ones,
    ``up()`` listens again on the same port (a database that becomes unreachable and comes back)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept(); close() would not
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def iter_json(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record


__all__ = ["PROJECT", "DaemonProcess", "TcpProxy", "bounce_for", "bounces", "cli", "imap_box", "iter_json",
           "run_once", "write_config"]


