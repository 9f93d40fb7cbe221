"""The README's policy section, sentence by sentence, through the real store on both engines
(tests/store/test_store_policy.py pins the pure ``decide`` function; this pins what a user reads)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from processor.cli import main
from processor.records import BounceType, EventKind
from processor.store import Store
from tests.store.helpers import message, soft, verdict

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _at(store: Store, when: datetime, *verdicts: object) -> None:
    store.record_message(replace(message(), received_at=when), list(verdicts), now=when)  # type: ignore[arg-type]


def _entry(store: Store, address: str, when: datetime) -> tuple[str, str, datetime | None] | None:
    entry = store.is_suppressed(address, now=when)
    return None if entry is None else (entry.source, entry.bounce_type, entry.expires_at)


def test_hard_bounce_suppresses_at_once_for_ever(store: Store) -> None:
    """A hard bounce: suppressed at once, with no expiry."""
    _at(store, T0, verdict("hard@example.org"))
    assert _entry(store, "hard@example.org", T0 + timedelta(days=3650)) == ("bounce", "hard", None)


def test_third_soft_bounce_within_seven_days_suppresses_for_fourteen(store: Store) -> None:
    """Two soft bounces are counted; the third within 7 days suppresses for 14 days."""
    for day in (0, 3):
        _at(store, T0 + timedelta(days=day), soft("full@example.org"))
        assert _entry(store, "full@example.org", T0 + timedelta(days=day)) is None
    third = T0 + timedelta(days=6)
    _at(store, third, soft("full@example.org"))
    assert _entry(store, "full@example.org", third) == ("bounce", "soft", third + timedelta(days=14))
    assert _entry(store, "full@example.org", third + timedelta(days=14, seconds=1)) is None


def test_soft_bounces_spread_over_more_than_seven_days_never_suppress(store: Store) -> None:
    """Three soft bounces more than 7 days apart from each other do not suppress."""
    for day in (0, 8, 16):
        _at(store, T0 + timedelta(days=day), soft("slow@example.org"))
    assert _entry(store, "slow@example.org", T0 + timedelta(days=16)) is None


def test_delays_never_count(store: Store) -> None:
    """Delay notices are recorded, never counted: five of them suppress nothing."""
    delay = verdict("late@example.org", BounceType.SOFT, EventKind.DELAY, reason="expired", status="4.4.1")
    for hour in range(5):
        _at(store, T0 + timedelta(hours=hour), delay)
    assert _entry(store, "late@example.org", T0 + timedelta(hours=5)) is None
    assert len(store.history("late@example.org")) == 5


def test_complaint_suppresses_for_ever_in_every_scope(store: Store) -> None:
    """A complaint suppresses at once, globally, with no expiry."""
    _at(store, T0, verdict("angry@example.org", BounceType.COMPLAINT, EventKind.COMPLAINT, reason="feedback",
                           status="", feedback_type="abuse"))
    assert _entry(store, "angry@example.org", T0 + timedelta(days=3650)) == ("complaint", "complaint", None)


@pytest.mark.parametrize(("feedback", "suppressed"), [("opt-out", ("unsubscribe", "complaint", None)),
                                                      ("not-spam", None), ("dmarc", None)])
def test_feedback_types(store: Store, feedback: str, suppressed: object) -> None:
    """opt-out suppresses as an unsubscribe; not-spam and dmarc reports are recorded only."""
    _at(store, T0, verdict("fb@example.org", BounceType.COMPLAINT, EventKind.COMPLAINT, reason="feedback",
                           status="", feedback_type=feedback))
    assert _entry(store, "fb@example.org", T0) == suppressed
    assert len(store.history("fb@example.org")) == 1


def test_manual_removal_wins_over_older_reports_not_newer_ones(store: Store) -> None:
    """After a removal, a late copy of an older bounce does not suppress again; a newer one does."""
    _at(store, T0, verdict("back@example.org"))
    removed = T0 + timedelta(days=1)
    store.remove("back@example.org", note="asked back", now=removed)
    assert _entry(store, "back@example.org", removed) is None
    _at(store, T0 + timedelta(hours=2), verdict("back@example.org"))   # received before the removal
    assert _entry(store, "back@example.org", removed + timedelta(hours=1)) is None
    newer = removed + timedelta(days=2)
    _at(store, newer, verdict("back@example.org"))
    assert _entry(store, "back@example.org", newer) == ("bounce", "hard", None)


def test_soft_bounces_before_a_removal_no_longer_count(store: Store) -> None:
    """Two soft bounces, a removal, one more soft bounce: not suppressed (only one counts)."""
    _at(store, T0, soft("reset@example.org"))
    _at(store, T0 + timedelta(hours=1), soft("reset@example.org"))
    store.remove("reset@example.org", now=T0 + timedelta(hours=2))
    _at(store, T0 + timedelta(hours=3), soft("reset@example.org"))
    assert _entry(store, "reset@example.org", T0 + timedelta(hours=3)) is None


def test_allow_window_ignores_bounces_but_not_complaints(store: Store) -> None:
    """Within --allow-days after a removal bounces are ignored; a complaint still suppresses."""
    store.remove("vip@example.org", allow_days=7, now=T0)
    _at(store, T0 + timedelta(days=2), verdict("vip@example.org"))
    assert _entry(store, "vip@example.org", T0 + timedelta(days=2)) is None
    _at(store, T0 + timedelta(days=3), verdict("vip@example.org", BounceType.COMPLAINT, EventKind.COMPLAINT,
                                               reason="feedback", status="", feedback_type="abuse"))
    assert _entry(store, "vip@example.org", T0 + timedelta(days=3)) == ("complaint", "complaint", None)


def test_a_soft_bounce_never_relabels_or_shortens_a_complaint(store: Store) -> None:
    """A later soft suppression leaves a complaint's source, type and (permanent) expiry alone."""
    _at(store, T0, verdict("c@example.org", BounceType.COMPLAINT, EventKind.COMPLAINT, reason="feedback",
                           status="", feedback_type="abuse"))
    for hour in range(3):
        _at(store, T0 + timedelta(hours=1 + hour), soft("c@example.org"))
    assert _entry(store, "c@example.org", T0 + timedelta(days=30)) == ("complaint", "complaint", None)


def test_suppress_check_exit_codes(capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: object) -> None:
    """check: 0 when none is suppressed, 1 when one of several is, 2 for an unreachable database."""
    assert main(["suppress", "add", "gone@example.org", "--database", db_url]) == 0
    assert main(["suppress", "check", "ok@example.org", "--database", db_url]) == 0
    assert main(["suppress", "check", "ok@example.org", "gone@example.org", "--database", db_url]) == 1
    capsys.readouterr()
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    assert main(["suppress", "check", "ok@example.org", "--database", unreachable]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bounce-processor: error: ") and err.count("\n") == 1
