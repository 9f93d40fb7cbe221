"""Fixtures for the rule tests: rule directories written on the fly, and events built by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def rule_dir(tmp_path: Path) -> Callable[..., Path]:
    """Write rule files into a fresh directory: ``rule_dir(name=text, ...)`` or ``rule_dir(text)``."""
    counter = iter(range(1000))

    def write(text: str | None = None, **files: str) -> Path:
        directory = tmp_path / f"rules{next(counter)}"
        directory.mkdir()
        if text is not None:
            files["rules.yaml"] = text
        for name, body in files.items():
            (directory / name.replace("_yaml", ".yaml")).write_text(body, encoding="utf-8")
        return directory

    return write
