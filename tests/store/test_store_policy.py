"""The policy: a pure function from (verdict, history, settings, now) to a decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processor.config import PolicySettings
from processor.decide import ActiveEntry, History, Source, decide, outranks, scope_for
from processor.records import Action, BounceType, Event, EventKind, OriginalMessage, Verdict

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DEFAULT = PolicySettings()
ADDRESS = "rcpt@example.org"


def verdict(
    bounce_type: BounceType,
    kind: EventKind = EventKind.FAILURE,
    *,
    action: Action | None = None,
    ttl: timedelta | None = None,
    feedback_type: str = "",
    dsn_action: str = "",
    sender: str = "",
) -> Verdict:
    event = Event(kind, recipient=ADDRESS, feedback_type=feedback_type, dsn_action=dsn_action,
                  original=OriginalMessage(from_addr=sender))
    return Verdict(event, "reason", bounce_type, "rule-1", action, ttl)


def history(**fields: object) -> History:
    return History(address=ADDRESS, **fields)  # type: ignore[arg-type]


# bounce type, event kind, feedback type, expected action, expected source, expected expiry
TABLE = [
    (BounceType.HARD, EventKind.FAILURE, "", Action.SUPPRESS, Source.BOUNCE, None),
    (BounceType.SOFT, EventKind.FAILURE, "", Action.COUNT, "", None),
    (BounceType.SOFT, EventKind.DELAY, "", Action.IGNORE, "", None),
    (BounceType.COMPLAINT, EventKind.COMPLAINT, "abuse", Action.SUPPRESS, Source.COMPLAINT, None),
    (BounceType.COMPLAINT, EventKind.COMPLAINT, "", Action.SUPPRESS, Source.COMPLAINT, None),
    (BounceType.COMPLAINT, EventKind.COMPLAINT, "opt-out", Action.SUPPRESS, Source.UNSUBSCRIBE, None),
    (BounceType.COMPLAINT, EventKind.COMPLAINT, "unsubscribe", Action.SUPPRESS, Source.UNSUBSCRIBE, None),
    (BounceType.COMPLAINT, EventKind.COMPLAINT, "not-spam", Action.IGNORE, "", None),
    (BounceType.COMPLAINT, EventKind.COMPLAINT, "auth-failure", Action.IGNORE, "", None),
    (BounceType.AUTO_REPLY, EventKind.AUTO_REPLY, "", Action.IGNORE, "", None),
    (BounceType.DELIVERED, EventKind.DELIVERED, "", Action.IGNORE, "", None),
    (BounceType.UNDETERMINED, EventKind.FAILURE, "", Action.IGNORE, "", None),
]


@pytest.mark.parametrize(("bounce_type", "kind", "feedback", "action", "source", "expires"), TABLE)
def test_first_event_decision_table(
    *,
    bounce_type: BounceType, kind: EventKind, feedback: str, action: Action, source: str, expires: datetime | None
) -> None:
    """With no history, each bounce type and feedback type gets its documented action."""
    decision = decide(verdict(bounce_type, kind, feedback_type=feedback), history(), DEFAULT, NOW)
    assert decision.action is action
    assert decision.source == source
    assert decision.expires_at == expires
    assert decision.address == ADDRESS


def test_hard_bounce_ttl_is_configurable() -> None:
    """hard_ttl_days turns the permanent hard suppression into one that expires."""
    decision = decide(verdict(BounceType.HARD), history(), PolicySettings(hard_ttl_days=30), NOW)
    assert decision.action is Action.SUPPRESS
    assert decision.expires_at == NOW + timedelta(days=30)


def test_soft_bounces_suppress_at_the_threshold_for_the_ttl() -> None:
    """The third soft failure within seven days suppresses for fourteen days."""
    earlier = (NOW - timedelta(days=6), NOW - timedelta(days=1))
    second = decide(verdict(BounceType.SOFT), history(soft_failures=earlier[:1]), DEFAULT, NOW)
    assert second.action is Action.COUNT and second.counted
    third = decide(verdict(BounceType.SOFT), history(soft_failures=earlier), DEFAULT, NOW)
    assert third.action is Action.SUPPRESS and third.counted
    assert third.expires_at == NOW + timedelta(days=14)
    assert third.source == Source.BOUNCE


def test_soft_failures_outside_the_window_do_not_count() -> None:
    """Failures eight and nine days ago are outside the seven-day window."""
    old = (NOW - timedelta(days=9), NOW - timedelta(days=8))
    assert decide(verdict(BounceType.SOFT), history(soft_failures=old), DEFAULT, NOW).action is Action.COUNT


def test_soft_failures_processed_out_of_order_still_count() -> None:
    """A late-processed older failure completes a group with newer ones within the window."""
    newer = (NOW + timedelta(days=1), NOW + timedelta(days=2))
    decision = decide(verdict(BounceType.SOFT), history(soft_failures=newer), DEFAULT, NOW + timedelta(days=3),
                      received_at=NOW)
    assert decision.action is Action.SUPPRESS


def test_soft_threshold_and_window_are_configurable() -> None:
    """soft_threshold=2 and soft_window_days=1 change when soft failures suppress."""
    settings = PolicySettings(soft_threshold=2, soft_window_days=1, soft_ttl_days=3)
    recent = (NOW - timedelta(hours=2),)
    decision = decide(verdict(BounceType.SOFT), history(soft_failures=recent), settings, NOW)
    assert decision.action is Action.SUPPRESS and decision.expires_at == NOW + timedelta(days=3)
    stale = (NOW - timedelta(days=2),)
    assert decide(verdict(BounceType.SOFT), history(soft_failures=stale), settings, NOW).action is Action.COUNT


def test_delays_never_count_even_with_soft_history() -> None:
    """A delay (kind or DSN action) is ignored however many soft failures came before."""
    many = tuple(NOW - timedelta(hours=h) for h in range(1, 6))
    for v in (verdict(BounceType.SOFT, EventKind.DELAY), verdict(BounceType.SOFT, dsn_action="delayed"),
              verdict(BounceType.SOFT, EventKind.DELAY, action=Action.COUNT)):
        decision = decide(v, history(soft_failures=many), DEFAULT, NOW)
        assert decision.action is Action.IGNORE
        assert not decision.counted


def test_explicit_suppress_rule_on_a_delay_is_respected() -> None:
    """Only an explicit action=suppress from a rule suppresses on a delay."""
    decision = decide(verdict(BounceType.SOFT, EventKind.DELAY, action=Action.SUPPRESS), history(), DEFAULT, NOW)
    assert decision.action is Action.SUPPRESS
    assert decision.expires_at == NOW + timedelta(days=14)


def test_action_overrides_win_over_the_bounce_type() -> None:
    """Verdict.action ignore/count/suppress replaces what the bounce type would do."""
    assert decide(verdict(BounceType.HARD, action=Action.IGNORE), history(), DEFAULT, NOW).action is Action.IGNORE
    counted = decide(verdict(BounceType.HARD, action=Action.COUNT), history(), DEFAULT, NOW)
    assert counted.action is Action.COUNT and counted.counted
    forced = decide(verdict(BounceType.UNDETERMINED, action=Action.SUPPRESS), history(), DEFAULT, NOW)
    assert forced.action is Action.SUPPRESS and forced.expires_at is None
    assert "rule rule-1 says suppress" in forced.explanation


def test_verdict_ttl_replaces_the_configured_ttl() -> None:
    """Verdict.ttl sets the expiry of a hard suppression and of a complaint."""
    ttl = timedelta(days=2)
    assert decide(verdict(BounceType.HARD, ttl=ttl), history(), DEFAULT, NOW).expires_at == NOW + ttl
    complaint = verdict(BounceType.COMPLAINT, EventKind.COMPLAINT, ttl=ttl, feedback_type="abuse")
    assert decide(complaint, history(), DEFAULT, NOW).expires_at == NOW + ttl


def test_complaints_are_global_even_when_bounces_are_scoped() -> None:
    """With bounce_scope=sender_domain, a bounce is scoped to the sender's domain, a complaint is global."""
    settings = PolicySettings(bounce_scope="sender_domain")
    bounce = verdict(BounceType.HARD, sender="News <news@Sender.example>")
    assert scope_for(bounce, settings) == "sender.example"
    complaint = verdict(BounceType.COMPLAINT, EventKind.COMPLAINT, feedback_type="abuse", sender="news@sender.example")
    assert scope_for(complaint, settings) == "global"
    decision = decide(complaint, History(ADDRESS, scope="sender.example"), settings, NOW)
    assert decision.scope == "global"
    assert scope_for(bounce, DEFAULT) == "global"


def test_complaint_ttl_is_configurable() -> None:
    """complaint_ttl_days makes complaint suppressions expire."""
    complaint = verdict(BounceType.COMPLAINT, EventKind.COMPLAINT, feedback_type="abuse")
    decision = decide(complaint, history(), PolicySettings(complaint_ttl_days=365), NOW)
    assert decision.expires_at == NOW + timedelta(days=365)


def test_events_received_before_a_manual_removal_are_ignored() -> None:
    """An event received at or before the removal never re-suppresses, complaints included."""
    removed = NOW - timedelta(hours=1)
    for v in (verdict(BounceType.HARD), verdict(BounceType.COMPLAINT, EventKind.COMPLAINT, feedback_type="abuse")):
        decision = decide(v, history(removed_at=removed), DEFAULT, NOW, received_at=removed - timedelta(minutes=5))
        assert decision.action is Action.IGNORE
        assert "before the manual removal" in decision.explanation
    after = decide(verdict(BounceType.HARD), history(removed_at=removed), DEFAULT, NOW)
    assert after.action is Action.SUPPRESS


def test_allow_window_protects_from_bounces_but_not_complaints() -> None:
    """Within allow_window_days after a removal bounces are ignored; a fresh complaint still suppresses."""
    settings = PolicySettings(allow_window_days=3)
    removed = NOW - timedelta(days=1)
    assert decide(verdict(BounceType.HARD), history(removed_at=removed), settings, NOW).action is Action.IGNORE
    complaint = verdict(BounceType.COMPLAINT, EventKind.COMPLAINT, feedback_type="abuse")
    assert decide(complaint, history(removed_at=removed), settings, NOW).action is Action.SUPPRESS
    later = NOW + timedelta(days=3)
    assert decide(verdict(BounceType.HARD), history(removed_at=removed), settings, later).action is Action.SUPPRESS


def test_explicit_allow_until_overrides_the_configured_window() -> None:
    """A removal's own allow_until (from `suppress remove --allow-days`) replaces the setting."""
    removed = NOW - timedelta(days=1)
    h = history(removed_at=removed, allow_until=NOW + timedelta(days=1))
    assert decide(verdict(BounceType.HARD), h, DEFAULT, NOW).action is Action.IGNORE
    h = history(removed_at=removed, allow_until=removed)
    assert decide(verdict(BounceType.HARD), h, PolicySettings(allow_window_days=9), NOW).action is Action.SUPPRESS


def test_soft_failures_before_a_removal_do_not_count() -> None:
    """After a manual removal the soft count starts again."""
    removed = NOW - timedelta(hours=3)
    before = (NOW - timedelta(hours=5), NOW - timedelta(hours=4))
    decision = decide(verdict(BounceType.SOFT), history(soft_failures=before, removed_at=removed), DEFAULT, NOW)
    assert decision.action is Action.COUNT


def test_an_active_entry_is_never_weakened() -> None:
    """A new expiring suppression keeps a permanent entry permanent and a later expiry later."""
    permanent = ActiveEntry(Source.BOUNCE, "userunknown", "hard", None)
    soft = verdict(BounceType.SOFT, action=Action.SUPPRESS)
    assert decide(soft, history(entry=permanent), DEFAULT, NOW).expires_at is None
    far = NOW + timedelta(days=100)
    long = ActiveEntry(Source.BOUNCE, "x", "soft", far)
    assert decide(soft, history(entry=long), DEFAULT, NOW).expires_at == far
    short = ActiveEntry(Source.BOUNCE, "x", "soft", NOW + timedelta(days=1))
    assert decide(verdict(BounceType.HARD), history(entry=short), DEFAULT, NOW).expires_at is None


def test_ranking_keeps_the_strongest_label() -> None:
    """complaint > unsubscribe > manual/import > hard > soft when relabelling an entry."""
    complaint = ActiveEntry(Source.COMPLAINT, "abuse", "complaint", None)
    assert not outranks(Source.BOUNCE, "hard", complaint)
    assert outranks(Source.COMPLAINT, "complaint", complaint)
    soft = ActiveEntry(Source.BOUNCE, "mailboxfull", "soft", NOW)
    assert outranks(Source.BOUNCE, "hard", soft)
    hard = ActiveEntry(Source.BOUNCE, "userunknown", "hard", None)
    assert not outranks(Source.BOUNCE, "soft", hard)


def test_decide_is_pure() -> None:
    """The same inputs give the same decision, and the inputs are not changed."""
    h = history(soft_failures=(NOW - timedelta(days=1), NOW - timedelta(days=2)))
    v = verdict(BounceType.SOFT)
    assert decide(v, h, DEFAULT, NOW) == decide(v, h, DEFAULT, NOW)
    assert h.soft_failures == (NOW - timedelta(days=1), NOW - timedelta(days=2))
