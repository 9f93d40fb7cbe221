"""VERP return paths."""

from __future__ import annotations

import pytest

from processor.parse.return_path import recover

PREFIXES = ("bounces", "bounce")


@pytest.mark.parametrize(
    ("address", "recipient"),
    [
        ("bounces+alice=example.org@sender.example", "alice@example.org"),
        ("<bounce-alice.smith=mail.example.org@lists.example>", "alice.smith@mail.example.org"),
        ("bounces+campaign42+bob=example.net@sender.example", "bob@example.net"),
        ("bounces@sender.example", ""),
        ("alice=example.org@sender.example", ""),
        ("bounces+nothing@sender.example", ""),
    ],
)
def test_recover(address: str, recipient: str) -> None:
    """The recipient is recovered from VERP addresses with the configured prefixes only."""
    assert recover(address, PREFIXES) == recipient


def test_recover_signed_return_path() -> None:
    """A signed return path (processor.verp) also yields its recipient to the parser."""
    from processor.verp import make_return_path

    address = make_return_path("frank@example.org", secret="x" * 20, sender_domain="sender.example", tag="c7")
    assert recover(address, PREFIXES) == "frank@example.org"
