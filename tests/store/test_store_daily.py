"""The pre-aggregated daily counts: kept with the events in the recording transaction, equal to a
count over the events, never counted twice, rebuilt by the migration for older events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from processor.records import BounceType, EventKind
from processor.store import MessageRef, Store, StoreError, downgrade, upgrade
from processor.store.daily import daily_count, sender_domain
from tests.console.helpers import report


def counts(store: Store) -> Counter[tuple[str, str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(daily_count.c.dimension, daily_count.c.category, daily_count.c.day,
                                      daily_count.c.key, daily_count.c.n))
        return Counter({(d, c, day, k): n for d, c, day, k, n in rows})


def fill(store: Store) -> datetime:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    report(store, "a@one.example", at=now, rule_id="r-hard")
    report(store, "b@one.example", at=now, rule_id="r-hard", sender="Shop <shop@Sender.Example>")
    report(store, "c@two.example", at=now - timedelta(days=1), rule_id="r-hard")
    report(store, "d@two.example", kind=EventKind.DELAY, bounce_type=BounceType.SOFT, reason="mailboxfull",
           rule_id="r-soft", at=now)
    report(store, "e@two.example", kind=EventKind.COMPLAINT, bounce_type=BounceType.COMPLAINT, reason="abuse",
           rule_id="r-arf", at=now)
    return now


def test_recording_keeps_daily_counts(store: Store) -> None:
    """Each recorded report adds one to its (day, recipient domain / sending domain / rule, type) counts;
    a delay also counts as a deferral."""
    fill(store)
    found = counts(store)
    assert found[("rcpt", "hard", "2026-11-20", "one.example")] == 2
    assert found[("rcpt", "hard", "2026-11-19", "two.example")] == 1
    assert found[("rcpt", "soft", "2026-11-20", "two.example")] == 1
    assert found[("rcpt", "deferral", "2026-11-20", "two.example")] == 1
    assert found[("sender", "hard", "2026-11-20", "sender.example")] == 2
    assert found[("sender", "complaint", "2026-11-20", "sender.example")] == 1
    assert found[("rule", "hard", "2026-11-20", "r-hard")] == 2
    assert sum(n for (d, _, _, _), n in found.items() if d == "sender") == 6


def test_duplicates_count_once(store: Store) -> None:
    """A message recorded again (same content) is a duplicate and adds nothing to the counts."""
    fill(store)
    before = counts(store)
    from processor.records import Event, OriginalMessage, Verdict

    verdict = Verdict(Event(kind=EventKind.FAILURE, recipient="z@one.example",
                            original=OriginalMessage(from_addr="n@sender.example")),
                      "userunknown", BounceType.HARD, "r")
    ref = MessageRef.for_bytes(b"same bytes", mailbox="m", uidvalidity=1, uid=500)
    store.record_message(ref, [verdict])
    once = counts(store)
    store.record_message(MessageRef.for_bytes(b"same bytes", mailbox="m", uidvalidity=1, uid=501), [verdict])
    assert counts(store) == once
    assert sum(once.values()) == sum(before.values()) + 3


def test_counts_share_the_events_transaction(store: Store) -> None:
    """When writing the counts fails, the message's ledger row and events roll back with them."""
    fill(store)
    before = counts(store)
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON daily_count "
                                 "BEGIN SELECT RAISE(ABORT, 'counts refused'); END"))
        else:
            conn.execute(sa.text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                                 "$$ BEGIN RAISE EXCEPTION 'counts refused'; END $$"))
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON daily_count "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    try:
        with pytest.raises(StoreError, match="counts refused"):
            report(store, "new@three.example", at=datetime(2026, 11, 21, tzinfo=UTC))
    finally:
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse" if store.engine.dialect.name == "sqlite"
                                 else "DROP TRIGGER refuse ON daily_count"))
            if store.engine.dialect.name != "sqlite":
                conn.execute(sa.text("DROP FUNCTION refuse()"))
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM event WHERE domain = 'three.example'")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM processed_message")).scalar_one() == 5
    assert counts(store) == before


def test_migration_rebuilds_counts_for_older_events(store: Store) -> None:
    """Upgrading a database whose events predate the counts fills them in, equal to what recording keeps."""
    fill(store)
    kept = counts(store)
    downgrade(store.engine, "0001")
    upgrade(store.engine)
    assert counts(store) == kept


def test_sender_domain() -> None:
    """The sending domain comes from the address in a From header, lower-cased."""
    assert sender_domain("News <News@Sender.Example>") == "sender.example"
    assert sender_domain("plain@example.org") == "example.org"
    assert sender_domain("no address") == ""
    assert sender_domain("") == ""


def recount(store: Store) -> Counter[tuple[str, str, str, str]]:
    """The daily counts computed from the events themselves."""
    found: Counter[tuple[str, str, str, str]] = Counter()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT kind, bounce_type, received_at, domain, original_from, rule_id FROM event "
            "WHERE kind IN ('failure', 'delay', 'complaint', 'auto_reply', 'delivered')"))
        for kind, bounce_type, received_at, domain, original_from, rule_id in rows:
            day = str(received_at)[:10]
            for category in (bounce_type, "deferral") if kind == "delay" else (bounce_type,):
                found[("rcpt", category, day, domain)] += 1
                found[("sender", category, day, sender_domain(original_from))] += 1
                found[("rule", category, day, rule_id)] += 1
    return found


def test_reprocess_moves_the_counts_of_reclassified_events(store: Store) -> None:
    """Applying a reprocess that re-classifies events moves their counts to the new rule and type."""
    from processor.classify import load_classifier
    from processor.store.reprocess import reprocess

    fill(store)
    assert +counts(store) == recount(store)
    plan = reprocess(store, load_classifier(store.settings.rules), apply=True,
                     since=datetime(2026, 11, 1, tzinfo=UTC), now=datetime(2026, 11, 22, tzinfo=UTC))
    assert plan.events_reclassified > 0
    assert counts(store)[("rule", "hard", "2026-11-20", "r-hard")] == 0
    assert +counts(store) == recount(store)
