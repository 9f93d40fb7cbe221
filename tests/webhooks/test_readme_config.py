"""The README's webhook and outbox configuration examples are valid settings."""

from __future__ import annotations

import re
import tomllib

import pytest

from processor.config import Settings
from tests.conftest import PROJECT


def _blocks() -> list[str]:
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    return [b for b in blocks if "[webhooks." in b or "[outbox" in b]


def test_readme_has_a_block_per_receiver_and_the_outbox() -> None:
    """Each provider's section shows its settings, and the outbox section its endpoints."""
    joined = "".join(_blocks())
    for table in ("ses", "sendgrid", "mailgun", "postmark", "sparkpost", "brevo", "standard"):
        assert f"[webhooks.{table}]" in joined
    assert "[outbox.endpoints." in joined


@pytest.mark.parametrize("block", _blocks())
def test_readme_configuration_block_is_valid(block: str) -> None:
    """A README example, read as TOML, builds a Settings object."""
    settings = Settings(**tomllib.loads(block))
    assert settings.webhooks or settings.outbox.endpoints
