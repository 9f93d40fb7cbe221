"""Signed VERP return paths: made by senders, verified before a bounce may suppress."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from processor.verp import VerpError, make_return_path, verify_return_path

SECRET = "correct horse battery staple"
TODAY = date(2026, 11, 26)


def test_round_trip_with_tag() -> None:
    """A return path verifies and yields its recipient and tag."""
    path = make_return_path(
        "Alice@Example.org", secret=SECRET, sender_domain="sender.example", tag="spring26", today=TODAY
    )
    assert path.startswith("bounces+") and path.endswith("@sender.example")
    result = verify_return_path(path, secrets=[SECRET], today=TODAY)
    assert (result.valid, result.recipient, result.tag) == (True, "Alice@example.org", "spring26")


def test_lower_cased_by_an_mta_still_verifies() -> None:
    """MTAs that lower-case the local part do not break the signature."""
    path = make_return_path("Alice@example.org", secret=SECRET, sender_domain="sender.example", today=TODAY)
    assert verify_return_path(path.lower(), secrets=[SECRET], today=TODAY).valid


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.replace("=alice=", "=mallory="), "signature does not match"),
        (lambda p: p.replace("bounces+", "bounces+zz", 1)[:-1], "not a signed return path"),
        (lambda p: "bounces+alice=example.org@sender.example", "not a signed return path"),
    ],
)
def test_forged_or_altered_paths_fail(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    """A changed recipient or a plain VERP address never verifies."""
    path = make_return_path("alice@example.org", secret=SECRET, sender_domain="sender.example", today=TODAY)
    result = verify_return_path(mutate(path), secrets=[SECRET], today=TODAY)
    assert not result.valid and result.reason == reason and result.recipient == ""


def test_wrong_secret_fails_and_rotation_works() -> None:
    """Another secret does not verify; an old secret kept in the list still does."""
    path = make_return_path("alice@example.org", secret=SECRET, sender_domain="sender.example", today=TODAY)
    assert not verify_return_path(path, secrets=["another secret of enough length"], today=TODAY).valid
    assert verify_return_path(path, secrets=["a brand new secret value!", SECRET], today=TODAY).valid


def test_expiry() -> None:
    """A token older than max_age_days is refused with the age in the reason."""
    path = make_return_path("alice@example.org", secret=SECRET, sender_domain="sender.example", today=TODAY)
    assert verify_return_path(path, secrets=[SECRET], max_age_days=7, today=TODAY + timedelta(days=7)).valid
    late = verify_return_path(path, secrets=[SECRET], max_age_days=7, today=TODAY + timedelta(days=8))
    assert not late.valid and late.reason == "signature expired (8 days old, limit 7)"


@pytest.mark.parametrize(
    ("recipient", "kwargs", "message"),
    [
        ("not-an-address", {}, "not an address: 'not-an-address'"),
        ("a@example.org", {"tag": "has space"}, "a tag may hold only A-Z a-z 0-9 _ . (up to 32): 'has space'"),
        ("a@example.org", {"secret": "short"}, "the VERP secret must be at least 16 bytes long"),
    ],
)
def test_bad_input_is_refused(recipient: str, kwargs: dict[str, str], message: str) -> None:
    """Bad recipients, tags and secrets give a clear error."""
    options = {"secret": SECRET, "sender_domain": "sender.example", **kwargs}
    with pytest.raises(VerpError) as caught:
        make_return_path(recipient, **options)  # type: ignore[arg-type]
    assert str(caught.value) == message
