"""The program ends as soon as its command is done: no interpreter teardown after the work (the
daemon's stack made it ~0.2 s of every ``run --once``), with the output and the exit code kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT, SAMPLES

# an object that says so when the interpreter tears its module down (it never is, after os._exit)
_MARKER = """
import os, sys
class Marker:
    def __init__(self, write): self.write = write
    def __del__(self): self.write(2, b"TORN-DOWN\\n")
marker = Marker(os.write)
"""


def _program(argv: list[str]) -> subprocess.CompletedProcess[str]:
    code = _MARKER + f"sys.argv = ['bounce-processor', *{argv!r}]\nfrom processor.cli import entry\nentry()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PROJECT, timeout=120, check=False)


def test_the_program_exits_without_teardown_and_keeps_its_output() -> None:
    sample = next(SAMPLES.rglob("*.eml"))
    done = _program(["--log-format", "json", "parse", "--jsonl", str(sample)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and all(line.startswith("{") for line in done.stdout.splitlines())
    assert "TORN-DOWN" not in done.stderr


def test_the_program_keeps_a_failing_commands_exit_code() -> None:
    done = _program(["--log-format", "json", "parse", str(Path("/nonexistent/h9.eml"))])
    assert done.returncode != 0
    assert "TORN-DOWN" not in done.stderr


def test_the_program_waits_for_a_thread_still_running() -> None:
    """A non-daemon thread left running is waited for, as by a normal exit (and then torn down)."""
    code = _MARKER + (
        "import threading, time\n"
        "import processor.cli\n"
        "def work(): time.sleep(0.3); os.write(1, b'THREAD-DONE\\n')\n"
        "processor.cli.main = lambda argv=None: (threading.Thread(target=work).start(), 3)[1]\n"
        "processor.cli.entry()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PROJECT, timeout=120, check=False)
    assert done.returncode == 3
    assert "THREAD-DONE" in done.stdout
