"""What `run --once` shows a person at a terminal: progress, a summary, the next commands; and
that JSON logs and non-terminals are unchanged (one line per message)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from processor.commands._run_report import RunReport
from processor.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ["postfix-local-unknown-user.eml", "postfix-lmtp-unknown-user.eml", "postfix-delivered-notify.eml"]


def _inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in SAMPLES:
        shutil.copy(ROOT / "samples" / "generated" / "postfix" / name, inbox / name)
    (inbox / "broken.eml").write_bytes(b"")
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/bp.db"\n\n[mailboxes.inbox]\n'
                      f'source = "directory"\npath = "{inbox}"\n')
    return config


def _in_terminal(args: list[str], cwd: Path) -> str:
    """Run with stdout and stderr on a pseudo-terminal; everything it printed, colours removed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "processor", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_terminal_run_once_shows_progress_and_a_summary(tmp_path: Path) -> None:
    """In a terminal: a bar for the mailbox, no per-message lines, the summary with exact counts
    (3 reports, 1 unreadable message quarantined, 2 new hard suppressions) and what to run next."""
    config = _inbox(tmp_path)
    out = _in_terminal(["--config", str(config), "--log-format", "console", "run", "--once"], tmp_path)
    assert "inbox" in out and "4/4" in out
    assert "message.processed" not in out
    assert "Looked at 4 messages in 1 mailbox" in out and "4 new, 0 recorded before" in out
    assert re.search(r"suppressed: +2 new addresses +\(userunknown 2\)", out), out
    assert re.search(r"quarantined: +1 ", out) and f"{tmp_path}/inbox/Quarantine/" in out
    assert f"bounce-processor --config {config} suppress list" in out
    again = _in_terminal(["--config", str(config), "--log-format", "console", "run", "--once"], tmp_path)
    assert "0 new" in again and "suppressed:   no new address" in again


def test_json_logs_keep_one_line_per_message(tmp_path: Path) -> None:
    """With --log-format json (or no terminal) nothing changes: one message.processed line each."""
    config = _inbox(tmp_path)
    done = subprocess.run([sys.executable, "-m", "processor", "--config", str(config), "--log-format", "json",
                           "run", "--once"], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120)
    events = Counter(json.loads(line)["event"] for line in done.stderr.splitlines() if line.startswith("{"))
    assert events["message.processed"] == 3 and events["message.quarantined"] == 1
    assert events["daemon.once_done"] == 1
    assert done.stdout == ""


def test_report_counts_what_the_log_says() -> None:
    """The report's counts come from the daemon's events; per-message lines are dropped unless DEBUG."""
    report = RunReport()
    assert report.observe("info", {"event": "mailbox.draining", "mailbox": "m/INBOX", "candidates": 3}) is False
    keep = report.observe("info", {"event": "message.processed", "mailbox": "m/INBOX",
                                   "bounce_types": ["hard", "soft"]})
    report.observe("info", {"event": "message.duplicate", "mailbox": "m/INBOX"})
    assert report.observe("warning", {"event": "message.quarantined", "mailbox": "m/INBOX", "uid": 7,
                                      "error": "no report", "to": "Quarantine"})
    report.observe("info", {"event": "mailbox.drained", "mailbox": "m/INBOX", "already": 5})
    assert keep is False
    assert RunReport(verbose=True).observe("info", {"event": "message.processed", "bounce_types": []})
    text = report.summary(Settings(), None, Counter({"userunknown": 1}))
    assert "Looked at 8 messages in 1 mailbox" in text and "2 new, 6 recorded before" in text
    assert "events:       2  (hard 1, soft 1)" in text
    assert "suppressed:   1 new address  (userunknown 1)" in text
    assert "UID 7: no report -> folder Quarantine of m/INBOX" in text
