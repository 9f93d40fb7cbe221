"""The [parse] and [rules] sections read on their own agree with the full settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.config import load_settings
from processor.parse_settings import SectionsError, read_parse_sections

CONFIG = """
[database]
url = "sqlite:///x.db"

[parse]
max_message_bytes = 2048
correlation_headers = ["X-Campaign-ID"]

[rules]
include_defaults = false
"""


def test_file_and_environment_read_as_the_full_settings_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values from the file, overridden from BOUNCE_PARSE__* and BOUNCE_RULES__* (lists as JSON)."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    rules = tmp_path / "rules"
    rules.mkdir()
    monkeypatch.setenv("BOUNCE_PARSE__MAX_MESSAGE_BYTES", "4096")
    monkeypatch.setenv("BOUNCE_RULES__DIRS", f'["{rules}"]')
    sections = read_parse_sections(str(config))
    full = load_settings(config)
    assert sections == (full.parse, full.rules)
    assert sections[0].max_message_bytes == 4096 and sections[0].correlation_headers == ["X-Campaign-ID"]
    assert sections[1].dirs == [rules] and not sections[1].include_defaults


def test_invalid_values_are_named_as_the_full_settings_name_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value gives the same one-line message ``load_settings`` gives."""
    monkeypatch.delenv("BOUNCE_PROCESSOR_CONFIG", raising=False)
    monkeypatch.setenv("BOUNCE_PARSE__MAX_MESSAGE_BYTES", "many")
    with pytest.raises(SectionsError) as raised:
        read_parse_sections(None)
    from processor.config import ConfigError

    with pytest.raises(ConfigError) as full:
        load_settings(None)
    assert str(raised.value) == str(full.value)


def test_a_whole_section_as_one_variable_is_left_to_the_full_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """BOUNCE_RULES='{...}' is a form only pydantic-settings reads: the caller is told to use it."""
    monkeypatch.delenv("BOUNCE_PROCESSOR_CONFIG", raising=False)
    monkeypatch.setenv("BOUNCE_RULES", '{"include_defaults": false}')
    assert read_parse_sections(None) is None


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A configuration file that is not there is reported, not ignored."""
    with pytest.raises(SectionsError, match="configuration file not found"):
        read_parse_sections(str(tmp_path / "nope.toml"))
