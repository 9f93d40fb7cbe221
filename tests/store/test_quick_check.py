"""``suppress check``'s quick path answers exactly as the store does, on both engines."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from processor.commands._quick_check import DEFAULTS, quick_check
from processor.commands.suppress_cmd import full_check
from processor.config import DatabaseSettings
from processor.store import open_store


def check_args(db_url: str, *addresses: str, scope: str = "global", as_json: bool = False) -> argparse.Namespace:
    return argparse.Namespace(addresses=list(addresses), scope=scope, json=as_json, database=db_url, config=None)


def test_defaults_are_the_settings_defaults() -> None:
    """The quick path's defaults are DatabaseSettings' own, so both paths read the same database."""
    defaults = DatabaseSettings()
    assert {key: getattr(defaults, key) for key in DEFAULTS} == DEFAULTS


def test_quick_path_prints_what_the_store_prints(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    """Global, scoped, expired, noted and unknown addresses, as lines and as JSON: same output,
    same exit code as the full path, and the quick path really answers."""
    store = open_store(url=db_url)
    try:
        store.add("ann@example.org", reason="asked", note="by phone", actor="test")
        store.add("bob@example.org", reason="asked", scope="newsletters", actor="test")
        store.add("cat@example.org", reason="asked", actor="test",
                  expires_at=datetime.now(UTC) + timedelta(days=3))
        store.add("dan@example.org", reason="asked", scope="newsletters", actor="test")
        store.add("dan@example.org", reason="gone", actor="test")
        long_ago = datetime.now(UTC) - timedelta(days=30)
        store.add("fay@example.org", reason="asked", actor="test", now=long_ago,
                  expires_at=long_ago + timedelta(days=1))
    finally:
        store.close()
    addresses = ("Ann@Example.org", "bob@example.org", "cat@example.org", "dan@example.org", "eve@example.org",
                 "fay@example.org")
    for scope in ("global", "newsletters"):
        for as_json in (False, True):
            for chosen in (addresses, addresses[-1:]):
                args = check_args(db_url, *chosen, scope=scope, as_json=as_json)
                capsys.readouterr()
                quick = quick_check(args)
                quick_out = capsys.readouterr().out
                full = full_check(args)
                full_out = capsys.readouterr().out
                assert quick is not None, "the quick path stepped aside"
                assert (quick, quick_out) == (full, full_out)


def test_steps_aside_for_what_it_cannot_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database file that does not exist yet, an invalid address or an unknown URL form is
    left to the full path (which creates, reports or refuses), and nothing is printed."""
    missing = f"sqlite:///{tmp_path / 'new.db'}"
    assert quick_check(check_args(missing, "ann@example.org")) is None
    assert not (tmp_path / "new.db").exists()
    assert quick_check(check_args(f"sqlite:///{tmp_path / 'x.db'}", "nobody@")) is None
    assert quick_check(check_args("mysql://db/x", "ann@example.org")) is None
    assert capsys.readouterr().out == ""
