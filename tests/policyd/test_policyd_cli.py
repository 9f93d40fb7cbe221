"""`bounce-processor policyd` as a process: its log lines, signals and start-up errors."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import PROJECT
from tests.policyd.helpers import Client, request_bytes, wait_until, write_config


def test_malformed_request_is_logged_and_service_carries_on(sqlite_url: str, store_at: Any,
                                                             policyd_process: Any) -> None:
    """A malformed request gives one clear JSON log line naming the peer and the problem; the
    connection is closed and the next client is served."""
    store_at(sqlite_url).add("gone@example.org", reason="userunknown")
    process = policyd_process(sqlite_url)
    port = int(process.listen.rsplit(":", 1)[1])
    with Client(port) as client:
        client.send(b"GET / HTTP/1.0\n\n")
        assert client.closed_by_server()
    assert wait_until(lambda: any(e["event"] == "policyd.malformed_request" for e in process.events()))
    logged = next(e for e in process.events() if e["event"] == "policyd.malformed_request")
    assert logged["level"] == "warning" and logged["error"] == "line is not name=value: 'GET / HTTP/1.0'"
    assert logged["action"] == "connection closed" and logged["peer"].startswith("127.0.0.1:")
    with Client(port) as client:
        assert client.ask("gone@example.org") == "REJECT 5.1.1 recipient suppressed: userunknown"
    assert process.proc.poll() is None
    assert wait_until(lambda: any(e["event"] == "policyd.answer" for e in process.events()))
    answered = [e for e in process.events() if e["event"] == "policyd.answer"]
    assert [(e["recipient"], e["answer"]) for e in answered] == [("gone@example.org", "REJECT")]


def test_sigterm_stops_cleanly_and_removes_the_socket(sqlite_url: str, policyd_process: Any) -> None:
    """SIGTERM closes connections, removes the UNIX socket and exits 0 within seconds."""
    directory = Path(tempfile.mkdtemp(prefix="bp-pd-", dir="/tmp"))
    try:
        path = directory / "policy.sock"
        process = policyd_process(sqlite_url, listen=f"unix:{path}")
        with Client(str(path)) as client:
            assert client.ask("a@example.org") == "DUNNO"
            process.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert process.proc.wait(10) == 0
            assert time.monotonic() - started < 5
            assert client.closed_by_server()
        assert not path.exists()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_sighup_reloads(sqlite_url: str, store_at: Any, policyd_process: Any) -> None:
    """SIGHUP reads the whole list again (logged) without dropping connections."""
    process = policyd_process(sqlite_url, refresh_seconds=0.2)
    port = int(process.listen.rsplit(":", 1)[1])
    with Client(port) as client:
        assert client.ask("a@example.org") == "DUNNO"
        store_at(sqlite_url).add("a@example.org")
        process.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: sum(e["event"] == "policyd.loaded" for e in process.events()) >= 2)
        assert client.ask("a@example.org") == "REJECT 5.1.1 recipient suppressed: manual"


def test_port_in_use_is_a_one_line_error(sqlite_url: str, tmp_path: Path) -> None:
    """A listen address already taken exits 2 with one error line and no traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "c.toml", sqlite_url, {})
        proc = subprocess.run(
            [sys.executable, "-m", "processor", "--config", str(config), "--log-level", "WARNING",
             "policyd", "--listen", f"inet:127.0.0.1:{port}"],
            cwd=PROJECT, capture_output=True, text=True, timeout=60, check=False,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"bounce-processor: error: cannot listen on inet:127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in proc.stderr


def test_bad_listen_argument_is_a_one_line_error(sqlite_url: str, tmp_path: Path) -> None:
    """An unusable --listen value is refused before anything starts."""
    config = write_config(tmp_path / "c.toml", sqlite_url, {})
    proc = subprocess.run(
        [sys.executable, "-m", "processor", "--config", str(config), "policyd", "--listen", "tcp:nowhere"],
        cwd=PROJECT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ("bounce-processor: error: invalid listen address 'tcp:nowhere': "
                           "expected inet:HOST:PORT or unix:/path\n")


def test_pipelined_burst_against_the_process(sqlite_url: str, store_at: Any, policyd_process: Any) -> None:
    """Two thousand requests written at once to the real process are all answered in order."""
    store = store_at(sqlite_url)
    for i in range(0, 2000, 7):
        store.add(f"r{i}@example.org", reason="userunknown")
    process = policyd_process(sqlite_url)
    port = int(process.listen.rsplit(":", 1)[1])
    with Client(port) as client:
        client.send(b"".join(request_bytes(f"r{i}@example.org") for i in range(2000)))
        answers = client.answers(2000)
    assert [a.startswith("REJECT") for a in answers] == [i % 7 == 0 for i in range(2000)]


def test_metrics_endpoint_counts_answers(sqlite_url: str, store_at: Any, policyd_process: Any) -> None:
    """metrics_listen serves bounce_processor_policy_requests_total by answer."""
    import httpx

    from tests.servers import free_port

    store_at(sqlite_url).add("gone@example.org")
    metrics_port = free_port()
    process = policyd_process(sqlite_url, metrics_listen=f"127.0.0.1:{metrics_port}")
    with Client(int(process.listen.rsplit(":", 1)[1])) as client:
        answers = [client.ask("gone@example.org"), client.ask("here@example.org"), client.ask("here@example.org")]
        client.send(b"junk\n\n")
        assert client.closed_by_server()
    assert [a.split()[0] for a in answers] == ["REJECT", "DUNNO", "DUNNO"]
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    counts = {line.split("{")[1].split("}")[0]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("bounce_processor_policy_requests_total{")}
    assert counts == {'answer="REJECT"': 1.0, 'answer="DEFER"': 0.0, 'answer="DUNNO"': 2.0, 'answer="error"': 1.0}
