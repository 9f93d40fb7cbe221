"""Shared test fixtures. Tests that need a real server skip with a reason on a developer's laptop,
but fail when the CI variable is set: in CI a missing server is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = PROJECT / "samples"
IN_CI = bool(os.environ.get("CI"))


def require(available: bool, reason: str) -> None:
    """Skip (laptop) or fail (CI) when a server or tool the test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)
