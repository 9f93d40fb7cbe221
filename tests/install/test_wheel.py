"""The package as a user installs it: a wheel in a fresh virtual environment, used from outside
the source tree (no rules/, no samples/ beside it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "generated" / "postfix" / "postfix-local-unknown-user.eml"

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout,
                          env=env)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the bounce-processor command of a fresh venv holding only the wheel and its dependencies, a
    working directory outside the source tree)."""
    base = tmp_path_factory.mktemp("wheel")
    # build from a copy, so that the checkout gets no build/ or egg-info of the wheel's
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "*.db"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", base / "dist", source, cwd=base)
    wheels = list((base / "dist").glob("bounce_processor-*.whl"))
    assert len(wheels) == 1, wheels
    _run(sys.executable, "-m", "venv", base / "venv", cwd=base)
    _run(base / "venv" / "bin" / "python", "-m", "pip", "install", "-q", wheels[0], cwd=base)
    work = base / "elsewhere"
    work.mkdir()
    yield base / "venv" / "bin" / "bounce-processor", work


def test_wheel_ships_the_rules_and_the_units(installed: tuple[Path, Path]) -> None:
    """`rules check` finds the default rules inside the installed package; the systemd units are there too."""
    command, work = installed
    out = _run(command, "rules", "check", cwd=work)
    assert "site-packages/processor/default_rules" in out, out
    assert " rules in " in out and "are valid" in out
    package = next(command.parent.parent.glob("lib/python3*/site-packages/processor"))
    assert sorted(p.name for p in (package / "deploy" / "systemd").iterdir()) == [
        "bounce-processor-policyd.service", "bounce-processor.service"]


def test_wheel_parses_a_message(installed: tuple[Path, Path]) -> None:
    """`parse --jsonl FILE` classifies a bounce with the packaged rules."""
    command, work = installed
    shutil.copy(SAMPLE, work / "bounce.eml")
    events = [json.loads(line) for line in _run(command, "parse", "--jsonl", "bounce.eml", cwd=work).splitlines()]
    assert [(e["recipient"], e["reason"], e["bounce_type"]) for e in events] == [
        ("nosuchuser@local.example.net", "userunknown", "hard")]


def test_wheel_run_without_configuration_says_what_to_do(installed: tuple[Path, Path]) -> None:
    """Outside a checkout there is no demo to read: `run --once` says to run `init`, exit 1."""
    command, work = installed
    done = subprocess.run([command, "run", "--once"], cwd=work,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 1
    assert "bounce-processor init" in done.stderr


def test_wheel_init_run_once_and_api(installed: tuple[Path, Path]) -> None:
    """init, then run --once on the directory source it made, then the API answers /readyz and
    the suppression it recorded."""
    command, work = installed
    out = _run(command, "init", "site", cwd=work)
    token = next(word for word in out.split() if word.startswith("bp_"))
    config = work / "site" / "config.toml"
    shutil.copy(SAMPLE, work / "site" / "incoming" / "bounce.eml")
    _run(command, "--config", config, "--log-format", "json", "run", "--once", cwd=work)
    port = free_port()
    env = {**os.environ, "BOUNCE_API__PORT": str(port)}
    api = subprocess.Popen([command, "--config", config, "--log-format", "json", "api"], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert api.poll() is None, api.stdout.read() if api.stdout else ""
                assert time.monotonic() < deadline, "the API did not answer /readyz within 60 s"
                time.sleep(0.2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/suppressions/nosuchuser@local.example.net",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            entry = json.loads(answer.read())
        assert (entry["reason"], entry["bounce_type"]) == ("userunknown", "hard")
    finally:
        api.terminate()
        api.wait(timeout=20)
