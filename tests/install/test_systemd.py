"""The systemd units in processor/deploy/systemd: valid for systemd, hardened, and their commands
behave as the units expect (SIGHUP reloads, SIGTERM stops cleanly with exit 0)."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.servers import free_port

UNITS = Path(__file__).resolve().parents[2] / "processor" / "deploy" / "systemd"
COMMAND = Path(sys.executable).with_name("bounce-processor")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": ""}


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def _exec_start(name: str) -> list[str]:
    argv = shlex.split(_unit(name)["Service"]["ExecStart"])
    assert argv[0] == "/opt/bounce-processor/bin/bounce-processor"
    return [str(COMMAND), *argv[1:]]


@pytest.mark.parametrize("name", ["bounce-processor.service", "bounce-processor-policyd.service"])
def test_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a single warning (an unknown key is a warning)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    text = (UNITS / name).read_text().replace("/opt/bounce-processor/bin/bounce-processor", str(COMMAND))
    (tmp_path / name).write_text(text)
    done = subprocess.run([analyze, "verify", str(tmp_path / name)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (0, "")


@pytest.mark.parametrize("name", ["bounce-processor.service", "bounce-processor-policyd.service"])
def test_unit_is_hardened_and_reloads_with_sighup(name: str) -> None:
    """An unprivileged user, the hardening settings, reload by SIGHUP and stop by SIGTERM."""
    service = _unit(name)["Service"]
    assert service["User"] == "bounce-processor"
    assert {key: service.get(key) for key in HARDENING} == HARDENING
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Environment"] == "BOUNCE_PROCESSOR_CONFIG=/etc/bounce-processor/config.toml"


class _Log:
    """The JSON log lines a process writes to stderr, read by a thread as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[dict[str, object]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def count(self, event: str) -> int:
        return sum(1 for line in list(self.lines) if line.get("event") == event)

    def wait_for(self, event: str, seconds: float, times: int = 1) -> None:
        deadline = time.monotonic() + seconds
        while self.count(event) < times:
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self._thread.is_alive()):
                raise AssertionError(f"no {event} (x{times}) within {seconds} s; exit {self.proc.poll()}; "
                                     f"log: {self.lines[-20:]}")
            time.sleep(0.05)

    def errors(self) -> list[dict[str, object]]:
        self._thread.join(5)
        return [line for line in self.lines if line.get("level") in ("error", "critical")]


def test_daemon_unit_command_reloads_on_sighup_and_stops_cleanly(tmp_path: Path) -> None:
    """The daemon unit's ExecStart, run with an init'ed configuration: SIGHUP (ExecReload) reloads
    the rules, SIGTERM (KillSignal) stops it with exit 0 and no error logged."""
    from processor.cli import main

    assert main(["init", str(tmp_path / "etc")]) == 0
    env = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(tmp_path / "etc" / "config.toml"),
           "BOUNCE_API__PORT": str(free_port())}
    proc = subprocess.Popen(_exec_start("bounce-processor.service"), cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = _Log(proc)
    try:
        log.wait_for("daemon.started", 60)
        proc.send_signal(signal.SIGHUP)
        log.wait_for("daemon.sighup", 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.wait_for("daemon.stopped", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert log.errors() == []


def test_policyd_unit_command_reloads_on_sighup_and_stops_cleanly(tmp_path: Path) -> None:
    """The policyd unit's ExecStart: SIGHUP reads the list again, SIGTERM stops it with exit 0."""
    from processor.cli import main

    assert main(["init", str(tmp_path / "etc")]) == 0
    env = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(tmp_path / "etc" / "config.toml"),
           "BOUNCE_POLICYD__LISTEN": f"inet:127.0.0.1:{free_port()}"}
    proc = subprocess.Popen(_exec_start("bounce-processor-policyd.service"), cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = _Log(proc)
    try:
        log.wait_for("policyd.loaded", 60)
        loads = log.count("policyd.loaded")
        proc.send_signal(signal.SIGHUP)
        log.wait_for("policyd.loaded", 30, times=loads + 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert log.errors() == []
