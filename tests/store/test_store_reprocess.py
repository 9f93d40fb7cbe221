"""`reprocess`: stored events replayed through new rules show (dry run) or apply the changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from processor.records import BounceType, Event, EventKind, Verdict
from processor.store import Store
from processor.store.reprocess import reprocess
from tests.store.helpers import message, verdict

NOW = datetime.now(UTC).replace(microsecond=0)


class StatusRules:
    """A small real classifier: bounce type by the status's class, with chosen overrides."""

    def __init__(self, overrides: dict[str, tuple[str, BounceType]] | None = None) -> None:
        self.overrides = overrides or {}

    def classify(self, event: Event) -> Verdict:
        if event.status in self.overrides:
            reason, bounce_type = self.overrides[event.status]
            return Verdict(event, reason, bounce_type, "new-rule")
        if event.kind is EventKind.COMPLAINT:
            return Verdict(event, "feedback", BounceType.COMPLAINT, "test-rule")
        if event.status.startswith("5"):
            return Verdict(event, "userunknown", BounceType.HARD, "test-rule")
        return Verdict(event, "mailboxfull", BounceType.SOFT, "test-rule")


def _events(store: Store) -> list[tuple[str, str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT address, reason, bounce_type, decision FROM event "
                                    "WHERE kind = 'failure' ORDER BY id")).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_unchanged_rules_change_nothing(store: Store) -> None:
    """Replaying with the rules that produced the events finds no change."""
    store.record_message(message(), [verdict("h@example.org", status="5.1.1")], now=NOW)
    for _ in range(3):
        store.record_message(message(), [verdict("s@example.org", BounceType.SOFT, reason="mailboxfull",
                                                 status="4.2.2")], now=NOW)
    plan = reprocess(store, StatusRules(), now=NOW)
    assert (plan.events_seen, plan.events_reclassified, plan.changes) == (4, 0, [])


def test_dry_run_shows_and_apply_writes(store: Store) -> None:
    """A rule turning 5.2.2 from hard into soft shows an unsuppress; --apply performs it once."""
    for address in ("q1@example.org", "q2@example.org"):
        store.record_message(message(), [verdict(address, status="5.2.2", reason="quota")], now=NOW)
    store.record_message(message(), [verdict("keep@example.org", status="5.1.1")], now=NOW)
    store.add("manual@example.org", now=NOW)
    store.record_message(message(), [verdict("manual@example.org", status="5.2.2", reason="quota")], now=NOW)
    rules = StatusRules({"5.2.2": ("mailboxfull", BounceType.SOFT)})
    before = _events(store)

    plan = reprocess(store, rules, now=NOW)
    assert plan.events_reclassified == 3
    assert [(c.action, c.address) for c in plan.changes] == [("unsuppress", "q1@example.org"),
                                                            ("unsuppress", "q2@example.org")]
    assert _events(store) == before
    assert store.is_suppressed("q1@example.org") is not None

    applied = reprocess(store, rules, apply=True, now=NOW)
    assert applied.applied and len(applied.changes) == 2
    assert store.is_suppressed("q1@example.org") is None
    assert store.is_suppressed("keep@example.org") is not None
    manual = store.is_suppressed("manual@example.org")
    assert manual is not None and manual.source == "manual"
    assert ("q1@example.org", "mailboxfull", "soft", "count") in _events(store)
    assert [e.kind for e in store.history("q1@example.org")] == ["reprocess", "failure"]
    assert reprocess(store, rules, now=NOW).changes == []


def test_new_rule_can_suppress_from_old_soft_events(store: Store) -> None:
    """Soft events re-classified hard suppress the address on apply."""
    store.record_message(message(), [verdict("n@example.org", BounceType.SOFT, reason="mailboxfull",
                                             status="4.7.1")], now=NOW - timedelta(days=1))
    rules = StatusRules({"4.7.1": ("blocked", BounceType.HARD)})
    [change] = reprocess(store, rules, now=NOW).changes
    assert (change.action, change.address, change.after.reason if change.after else None) == (
        "suppress", "n@example.org", "blocked")
    reprocess(store, rules, apply=True, address="N@example.org", now=NOW)
    entry = store.is_suppressed("n@example.org")
    assert entry is not None and (entry.reason, entry.bounce_type, entry.source) == ("blocked", "hard", "bounce")


def test_replay_respects_manual_removals(store: Store) -> None:
    """An address removed by hand stays removed when its older events are re-classified hard."""
    store.record_message(message(), [verdict("r@example.org", BounceType.SOFT, reason="mailboxfull",
                                             status="4.7.1")], now=NOW - timedelta(hours=2))
    store.remove("r@example.org", now=NOW - timedelta(hours=1))
    rules = StatusRules({"4.7.1": ("blocked", BounceType.HARD)})
    plan = reprocess(store, rules, now=NOW)
    assert plan.events_reclassified == 1 and plan.changes == []
