"""``bounce-processor init``: a commented configuration that is the code's own, a database, a token."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from processor import config
from processor.api.auth import hash_token
from processor.cli import main
from processor.commands.init_cmd import _SECTIONS, field_docs
from processor.config import load_settings
from processor.store import open_store

ROOT = Path(__file__).resolve().parents[2]


def _init(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Path, str]:
    target = tmp_path / "bp"
    assert main(["init", str(target), *args]) == 0
    return target / "config.toml", capsys.readouterr().out


def test_every_setting_is_documented() -> None:
    """Each setting of every section (and of a mailbox) has a docstring, which init writes as its comment."""
    docs = field_docs()
    missing = [f"{cls}.{name}" for _, cls in [*_SECTIONS, ("mailboxes", "MailboxSettings")]
               for name in getattr(config, cls).model_fields if (cls, name) not in docs]
    assert missing == []


def test_init_writes_a_config_that_loads_to_the_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file loads; only the database URL, the token and the first mailbox differ from the defaults."""
    path, _ = _init(tmp_path, capsys)
    settings = load_settings(path)
    defaults = config.Settings()
    assert settings.database.url == f"sqlite:///{path.parent / 'bounce-processor.db'}"
    for section, _cls in _SECTIONS:
        got = getattr(settings, section).model_dump(exclude={"url", "tokens"})
        want = getattr(defaults, section).model_dump(exclude={"url", "tokens"})
        assert got == want, section
    assert list(settings.mailboxes) == ["incoming"]
    assert settings.mailboxes["incoming"].source == "directory"
    assert settings.mailboxes["incoming"].path == path.parent / "incoming"
    assert (path.parent / "incoming").is_dir()
    assert path.stat().st_mode & 0o777 == 0o640


def test_every_commented_default_is_the_real_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Uncommenting every `# name = value` line of the main sections changes nothing: the written
    defaults are the code's defaults, in valid TOML."""
    path, _ = _init(tmp_path, capsys)
    text = path.read_text()
    uncommented = re.sub(r"(?m)^# (\w+ = (?!\s*\(not set).+)$", r"\1", text.split("[mailboxes.incoming]")[0])
    assert uncommented.count("\n") == text.split("[mailboxes.incoming]")[0].count("\n")
    assert uncommented != text.split("[mailboxes.incoming]")[0]
    parsed = tomllib.loads(uncommented)
    defaults = config.Settings()
    for section, _cls in _SECTIONS:
        for name, value in parsed[section].items():
            if name in ("url", "tokens"):
                continue
            model_value = getattr(getattr(defaults, section), name)
            dumped = getattr(defaults, section).model_dump()[name]
            assert value in (dumped, model_value), f"{section}.{name}: {value!r} != {dumped!r}"
    full = uncommented + "[mailboxes.incoming]" + text.split("[mailboxes.incoming]")[1]
    (tmp_path / "all.toml").write_text(full)
    assert load_settings(tmp_path / "all.toml").policyd == defaults.policyd


def test_init_creates_the_database_and_prints_the_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The database is migrated; the printed token's hash is in the file and the token itself is not."""
    path, out = _init(tmp_path, capsys)
    token = re.search(r"\b(bp_[A-Za-z0-9_-]{20,})\b", out)
    assert token is not None, out
    text = path.read_text()
    assert token.group(1) not in text
    settings = load_settings(path)
    assert [(t.name, t.hash, t.scopes) for t in settings.api.tokens] == [
        ("admin", hash_token(token.group(1)), ["read", "write", "ui"])]
    store = open_store(settings, migrate=False)   # raises if the schema is not at head
    try:
        assert store.is_suppressed("nobody@example.org") is None
    finally:
        store.close()
    assert "run --once" in out and "suppress list" in out


def test_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second init into the same directory fails and leaves the first configuration as it was."""
    path, _ = _init(tmp_path, capsys)
    before = path.read_bytes()
    assert main(["init", str(path.parent)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_run_once_reads_the_incoming_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After init, a bounce dropped into incoming/ is read by run --once and suppresses its recipient."""
    path, _ = _init(tmp_path, capsys)
    sample = ROOT / "samples" / "generated" / "postfix" / "postfix-local-unknown-user.eml"
    (path.parent / "incoming" / sample.name).write_bytes(sample.read_bytes())
    # in a process of its own: `run` may end its process when one of its threads hangs
    done = subprocess.run([sys.executable, "-m", "processor", "--config", str(path), "--log-format", "json",
                           "run", "--once"], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (path.parent / "incoming" / "Processed" / sample.name).is_file()
    settings = load_settings(path)
    store = open_store(settings)
    try:
        entries = store.list_entries(limit=10).entries
    finally:
        store.close()
    assert [e.reason for e in entries] == ["userunknown"]
