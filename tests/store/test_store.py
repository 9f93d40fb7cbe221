"""The store on both engines: recording, idempotency, reads, manual changes, expiry, migrations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from processor.addresses import AddressError
from processor.config import DatabaseSettings, Settings
from processor.records import Action, BounceType, EventKind
from processor.store import EntryFilter, MessageRef, QueryError, Store, StoreError, open_store
from processor.store.engine import (
    create_store_engine,
    current_revision,
    downgrade,
    head_revision,
    head_revision_of_files,
    stored_revision,
    upgrade,
)
from processor.store.models import METADATA
from processor.store.types import MailboxPosition
from tests.store.helpers import message, soft, verdict

NOW = datetime.now(UTC).replace(microsecond=0)


def test_hard_bounce_is_recorded_and_suppressed(store: Store) -> None:
    """One message: ledger row, an event with every field, and a permanent suppression."""
    ref = MessageRef.for_bytes(b"dsn bytes", "INBOX", 41, 5, received_at=NOW - timedelta(minutes=1))
    result = store.record_message(ref, [verdict("Bob@Example.ORG")], now=NOW)
    assert not result.duplicate
    assert [d.action for d in result.decisions] == [Action.SUPPRESS]
    entry = store.is_suppressed("bob@example.org")
    assert entry is not None
    assert (entry.source, entry.reason, entry.bounce_type, entry.expires_at) == ("bounce", "userunknown", "hard", None)
    assert entry.last_event_id == result.event_ids[0]
    [event] = store.history("BOB@example.org")
    assert (event.mailbox, event.uidvalidity, event.uid, event.message_ref) == ("INBOX", 41, 5, result.message_ref)
    assert event.original_message_id == "<orig-Bob@Example.ORG@sender.example>"
    assert (event.recipient, event.address, event.domain) == ("Bob@Example.ORG", "bob@example.org", "example.org")
    assert (event.status, event.reply_code, event.smtp_command) == ("5.1.1", "550", "RCPT")
    assert event.diagnostic.startswith("smtp; 550 5.1.1")
    assert (event.reason, event.bounce_type, event.rule_id, event.decision) == (
        "userunknown", "hard", "test-rule", "suppress")
    assert event.received_at == NOW - timedelta(minutes=1)
    assert event.recorded_at == NOW


def test_same_message_twice_counts_once_by_either_key(store: Store) -> None:
    """A message seen before by (mailbox, UIDVALIDITY, UID) or by content hash is a duplicate."""
    first = MessageRef.for_bytes(b"one soft bounce", "INBOX", 1, 10)
    assert not store.record_message(first, [soft("s@example.org")]).duplicate
    same_uid = MessageRef("INBOX", "another-hash", 1, 10)
    moved_copy = MessageRef.for_bytes(b"one soft bounce", "Archive", 9, 77)
    for again in (first, same_uid, moved_copy):
        result = store.record_message(again, [soft("s@example.org")])
        assert result.duplicate
        assert result.message_ref == store.record_message(first, []).message_ref
        assert store.seen(again)
    assert len(store.history("s@example.org")) == 1
    assert not store.seen(MessageRef("INBOX", "new-hash", 1, 11))


def test_record_messages_is_one_transaction_for_a_batch(store: Store) -> None:
    """A batch commits together, reports duplicates inside it, and a failing message rolls back all."""
    first = MessageRef.for_bytes(b"batch one", "INBOX", 3, 1)
    copy = MessageRef.for_bytes(b"batch one", "INBOX", 3, 2)
    other = MessageRef.for_bytes(b"batch two", "INBOX", 3, 3)
    results = store.record_messages([(first, [verdict("b1@example.org")]), (copy, [verdict("b1@example.org")]),
                                     (other, [soft("b2@example.org")])])
    assert [r.duplicate for r in results] == [False, True, False]
    assert results[1].message_ref == results[0].message_ref
    assert [e.decision for e in store.history("b1@example.org")] == ["suppress"]
    broken = MessageRef(None, "hash-broken", 3, 5)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"database error: .*mailbox"):
        store.record_messages([(MessageRef.for_bytes(b"batch three", "INBOX", 3, 4), [verdict("b3@example.org")]),
                               (broken, [verdict("b4@example.org")])])
    assert store.history("b3@example.org") == []
    assert not store.seen(MessageRef.for_bytes(b"batch three", "INBOX", 3, 4))


def test_soft_failures_suppress_at_the_third_message(store: Store) -> None:
    """Three soft bounces in three messages within the window suppress for fourteen days."""
    actions = [store.record_message(message(), [soft("full@example.org")], now=NOW).decisions[0].action
               for _ in range(3)]
    assert actions == [Action.COUNT, Action.COUNT, Action.SUPPRESS]
    entry = store.is_suppressed("full@example.org", now=NOW)
    assert entry is not None and entry.expires_at == NOW + timedelta(days=14)


def test_delays_and_auto_replies_are_recorded_but_never_suppress(store: Store) -> None:
    """Delays, auto-replies and deliveries are stored as events and suppress nothing."""
    verdicts = [
        verdict("d@example.org", BounceType.SOFT, EventKind.DELAY, status="4.4.1"),
        verdict("v@example.org", BounceType.AUTO_REPLY, EventKind.AUTO_REPLY, status=""),
        verdict("ok@example.org", BounceType.DELIVERED, EventKind.DELIVERED, status="2.0.0"),
    ]
    for _ in range(4):
        store.record_message(message(), verdicts)
    for address in ("d@example.org", "v@example.org", "ok@example.org"):
        assert store.is_suppressed(address) is None
        assert [e.decision for e in store.history(address)] == ["ignore"] * 4


def test_complaint_suppresses_globally_at_once(store_with: Any, db_url: str) -> None:
    """A complaint suppresses in the global scope even when bounces are scoped per sender domain."""
    scoped = store_with(db_url, bounce_scope="sender_domain")
    scoped.record_message(message(), [verdict("c@example.org", BounceType.COMPLAINT, EventKind.COMPLAINT,
                                              reason="feedback", status="", feedback_type="abuse")])
    scoped.record_message(message(), [verdict("h@example.org")])
    complaint = scoped.is_suppressed("c@example.org")
    assert complaint is not None and (complaint.scope, complaint.source) == ("global", "complaint")
    assert scoped.is_suppressed("h@example.org") is None
    bounce = scoped.is_suppressed("h@example.org", scope="sender.example")
    assert bounce is not None and bounce.scope == "sender.example"
    assert scoped.is_suppressed("h@example.org", scope="other.example") is None
    assert scoped.is_suppressed("c@example.org", scope="sender.example") == complaint


def test_invalid_recipient_is_recorded_without_failing_the_message(store: Store) -> None:
    """A report whose recipient is not an address is kept as an ignored event with the reason."""
    result = store.record_message(message(), [verdict("not an address"), verdict("good@example.org")])
    assert [d.action for d in result.decisions] == [Action.IGNORE, Action.SUPPRESS]
    assert "invalid address 'not an address'" in result.decisions[0].explanation
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT recipient, address, decision FROM event ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("not an address", "", "ignore"), ("good@example.org", "good@example.org",
                                                                            "suppress")]


def test_expired_entries_stop_counting_at_once_and_are_purged(store: Store) -> None:
    """An entry past its expiry is not suppressed at query time; purge deletes it with an event."""
    store.add("t@example.org", expires_at=NOW + timedelta(days=1), now=NOW)
    store.add("p@example.org", now=NOW)
    later = NOW + timedelta(days=1, seconds=1)
    assert store.is_suppressed("t@example.org", now=NOW) is not None
    assert store.is_suppressed("t@example.org", now=later) is None
    assert store.check_many(["t@example.org"], now=later).suppressed == {}
    assert store.list_entries(now=later).entries[0].address == "p@example.org"
    assert store.purge_expired(now=later) == 1
    assert store.purge_expired(now=later) == 0
    assert [e.kind for e in store.history("t@example.org")] == ["expired", "manual_add"]
    assert store.list_entries(EntryFilter(include_expired=True), now=later).entries[0].address == "p@example.org"


def test_a_bounce_after_expiry_starts_a_fresh_entry(store: Store) -> None:
    """A new suppression of an expired, unpurged entry resets first_seen and the count."""
    store.add("x@example.org", expires_at=NOW + timedelta(hours=1), now=NOW)
    later = NOW + timedelta(days=2)
    store.record_message(message(), [verdict("x@example.org")], now=later)
    entry = store.is_suppressed("x@example.org", now=later)
    assert entry is not None
    assert (entry.source, entry.first_seen, entry.event_count, entry.expires_at) == ("bounce", later, 1, None)


def test_check_many_maps_inputs_to_entries(store: Store) -> None:
    """The batch check answers per given address, normalising, with invalid inputs reported."""
    for i in range(0, 300, 3):
        store.add(f"user{i}@example.org")
    given = [f"User{i}@Example.org" for i in range(300)] + ["<user0@example.org>", "broken@", "user3@example.org"]
    result = store.check_many(given)
    expected = {f"User{i}@Example.org" for i in range(0, 300, 3)} | {"<user0@example.org>", "user3@example.org"}
    assert set(result.suppressed) == expected
    assert result.suppressed["<user0@example.org>"].address == "user0@example.org"
    assert result.invalid == {"broken@": "invalid address 'broken@': empty domain after '@'"}


def test_check_many_handles_ten_thousand_addresses(store: Store) -> None:
    """10,000 addresses in one call (more than one query chunk) are all answered."""
    store.import_rows(_rows(f"bulk{i}@example.net" for i in range(0, 10_000, 2)))
    result = store.check_many([f"bulk{i}@example.net" for i in range(10_000)])
    assert len(result.suppressed) == 5000
    assert all(int(a[4:].split("@")[0]) % 2 == 0 for a in result.suppressed)


def _rows(addresses: Any) -> Any:
    from processor.store import ImportRow

    return (ImportRow(address=a, line=n) for n, a in enumerate(addresses, start=2))


def test_list_filters(store: Store) -> None:
    """Each filter (reason, type, source, scope, domain, since, until) narrows the list."""
    store.record_message(message(), [verdict("h@a.example")], now=NOW - timedelta(days=3))
    store.record_message(message(), [verdict("c@b.example", BounceType.COMPLAINT, EventKind.COMPLAINT,
                                             reason="feedback", status="", feedback_type="abuse")], now=NOW)
    store.add("m@b.example", reason="asked", scope="list:news", now=NOW)

    def listed(**filters: Any) -> list[str]:
        return [e.address for e in store.list_entries(EntryFilter(**filters)).entries]

    assert listed() == ["h@a.example", "c@b.example", "m@b.example"]
    assert listed(reason="feedback") == ["c@b.example"]
    assert listed(bounce_type="hard") == ["h@a.example"]
    assert listed(source="manual") == ["m@b.example"]
    assert listed(scope="list:news") == ["m@b.example"]
    assert listed(domain="B.Example") == ["c@b.example", "m@b.example"]
    assert listed(since=NOW - timedelta(days=1)) == ["c@b.example", "m@b.example"]
    assert listed(until=NOW - timedelta(days=1)) == ["h@a.example"]
    assert listed(domain="b.example", source="complaint") == ["c@b.example"]


def test_cursor_pagination_is_stable_while_entries_are_added(store: Store) -> None:
    """Paging sees every original entry exactly once even when entries are added between pages."""
    for i in range(25):
        store.add(f"page{i}@example.org")
    seen: list[str] = []
    cursor = None
    added = 0
    while True:
        page = store.list_entries(cursor=cursor, limit=7)
        seen.extend(e.address for e in page.entries)
        store.add(f"late{added}@example.org")
        added += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    originals = [a for a in seen if a.startswith("page")]
    assert originals == [f"page{i}@example.org" for i in range(25)]
    assert len(seen) == len(set(seen))


def test_bad_cursor_and_limit_are_query_errors(store: Store) -> None:
    """A forged cursor or a zero limit raise QueryError with a clear message."""
    with pytest.raises(QueryError, match="invalid cursor"):
        store.list_entries(cursor="not-a-cursor!")
    with pytest.raises(QueryError, match="limit must be at least 1"):
        store.list_entries(limit=0)


def test_manual_removal_wins_over_older_events(store: Store) -> None:
    """After a removal, a bounce received before it does not re-suppress; a newer one does."""
    store.record_message(message(), [verdict("r@example.org")], now=NOW - timedelta(hours=2))
    removed = store.remove("r@example.org", actor="cli:test", note="customer called", now=NOW)
    assert removed is not None and removed.reason == "userunknown"
    assert store.is_suppressed("r@example.org") is None
    stale = MessageRef.for_bytes(b"late stale dsn", "INBOX", 7, 999, received_at=NOW - timedelta(hours=1))
    result = store.record_message(stale, [verdict("r@example.org")], now=NOW + timedelta(minutes=5))
    assert result.decisions[0].action is Action.IGNORE
    assert store.is_suppressed("r@example.org") is None
    fresh = MessageRef.for_bytes(b"new dsn", "INBOX", 7, 1000, received_at=NOW + timedelta(hours=1))
    store.record_message(fresh, [verdict("r@example.org")], now=NOW + timedelta(hours=1))
    assert store.is_suppressed("r@example.org") is not None
    kinds = [(e.kind, e.decision, e.actor) for e in store.history("r@example.org")]
    assert kinds == [("failure", "suppress", ""), ("failure", "ignore", ""), ("manual_remove", "remove", "cli:test"),
                     ("failure", "suppress", "")]


def test_removal_allow_window_protects_from_new_bounces(store: Store) -> None:
    """remove(allow_days=2) ignores bounces for two days after the removal."""
    store.add("w@example.org", now=NOW)
    store.remove("w@example.org", allow_days=2, now=NOW)
    inside = MessageRef.for_bytes(b"inside", "INBOX", 7, 1, received_at=NOW + timedelta(days=1))
    assert store.record_message(inside, [verdict("w@example.org")], now=NOW + timedelta(days=1)).decisions[0].action \
        is Action.IGNORE
    outside = MessageRef.for_bytes(b"outside", "INBOX", 7, 2, received_at=NOW + timedelta(days=3))
    store.record_message(outside, [verdict("w@example.org")], now=NOW + timedelta(days=3))
    assert store.is_suppressed("w@example.org", now=NOW + timedelta(days=3)) is not None


def test_removing_an_unsuppressed_address_is_still_recorded(store: Store) -> None:
    """remove() returns None when nothing was active but records the removal."""
    assert store.remove("never@example.org") is None
    assert [e.kind for e in store.history("never@example.org")] == ["manual_remove"]


def test_manual_add_validates_and_replaces(store: Store) -> None:
    """add() normalises, rejects bad input clearly, and replaces an active entry's labels."""
    entry = store.add(" <Ann@Example.org> ", reason="asked", note="ticket 12", actor="api:ops", now=NOW)
    assert (entry.address, entry.source, entry.reason) == ("ann@example.org", "manual", "asked")
    assert entry.note == "ticket 12"
    again = store.add("ann@example.org", reason="asked again", now=NOW + timedelta(minutes=1))
    assert (again.id, again.reason, again.event_count) == (entry.id, "asked again", 2)
    assert again.first_seen == NOW
    with pytest.raises(AddressError, match="invalid address 'ann@'"):
        store.add("ann@")
    with pytest.raises(QueryError, match="not in the future"):
        store.add("b@example.org", expires_at=NOW - timedelta(days=1), now=NOW)
    with pytest.raises(QueryError, match="unknown source 'elsewhere'"):
        store.add("b@example.org", source="elsewhere")


def test_soft_bounce_never_relabels_a_complaint(store: Store) -> None:
    """An active complaint entry keeps its labels when soft bounces later reach the threshold."""
    store.record_message(message(), [verdict("k@example.org", BounceType.COMPLAINT, EventKind.COMPLAINT,
                                             reason="feedback", status="", feedback_type="abuse")])
    for _ in range(3):
        store.record_message(message(), [soft("k@example.org")])
    entry = store.is_suppressed("k@example.org")
    assert entry is not None
    assert (entry.source, entry.reason, entry.expires_at, entry.event_count) == ("complaint", "feedback", None, 2)


def test_history_is_newest_first_and_pages(store: Store) -> None:
    """history() lists an address's events newest first; before_id pages back."""
    for _ in range(5):
        store.record_message(message(), [soft("h@example.org")])
    events = store.history("h@example.org", limit=3)
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    older = store.history("h@example.org", before_id=events[-1].id)
    assert len(older) == 2 and older[0].id < events[-1].id


def test_stats_count_events_and_entries(store: Store) -> None:
    """stats() counts report events in the window by type, reason, domain, mailbox and decision."""
    store.record_message(message("INBOX"), [verdict("a@one.example"), soft("b@two.example")], now=NOW)
    store.record_message(message("FBL"), [verdict("c@one.example", BounceType.COMPLAINT, EventKind.COMPLAINT,
                                                  reason="feedback", status="", feedback_type="abuse")], now=NOW)
    store.record_message(message("INBOX"), [verdict("old@one.example")], now=NOW - timedelta(days=30))
    store.add("m@three.example", now=NOW)
    stats = store.stats(NOW - timedelta(days=1), NOW + timedelta(seconds=1))
    assert stats.events_by_bounce_type == {"complaint": 1, "hard": 1, "soft": 1}
    assert stats.events_by_reason == {"feedback": 1, "mailboxfull": 1, "userunknown": 1}
    assert stats.events_by_domain == {"one.example": 2, "two.example": 1}
    assert stats.events_by_mailbox == {"INBOX": 2, "FBL": 1}
    assert stats.events_by_decision == {"suppress": 2, "count": 1}
    assert stats.active_by_source == {"bounce": 2, "complaint": 1, "manual": 1}
    assert stats.active_total == 4
    with pytest.raises(QueryError, match="since is after until"):
        store.stats(NOW, NOW - timedelta(days=1))


def test_mailbox_state_round_trip_and_advance(store: Store) -> None:
    """UIDVALIDITY and last UID per mailbox: set, read, and advanced by record_message."""
    assert store.get_mailbox_state("INBOX") is None
    store.set_mailbox_state("INBOX", 41, 100)
    store.record_message(MessageRef("INBOX", "h1", 41, 150), [])
    store.record_message(MessageRef("INBOX", "h2", 41, 120), [])
    store.record_message(MessageRef("INBOX", "h3", 40, 999), [])
    state = store.get_mailbox_state("INBOX")
    assert state is not None and (state.uidvalidity, state.last_uid) == (41, 150)
    store.set_mailbox_state("INBOX", 42, 0)
    state = store.get_mailbox_state("INBOX")
    assert state is not None and (state.uidvalidity, state.last_uid) == (42, 0)


def test_mailbox_position_and_recorded_uids_read_on_the_drivers_cursor(store: Store) -> None:
    """The daemon's look-ups before and after each batch: the position comes back with its time
    (aware UTC, to the microsecond); recorded_uids names exactly the UIDs of that mailbox and
    UIDVALIDITY in the ledger, over more UIDs than one query takes."""
    when = datetime(2026, 11, 30, 3, 4, 5, 123456, tzinfo=UTC)
    store.set_mailbox_state("INBOX", 41, 7, now=when)
    assert store.get_mailbox_state("INBOX") == MailboxPosition("INBOX", 41, 7, when)
    store.set_mailbox_state("Other", 5, 0, now=when)
    recorded = list(range(1, 1300, 3))
    store.record_messages([(MessageRef("INBOX", f"h{uid}", 41, uid), []) for uid in recorded]
                          + [(MessageRef("INBOX", "other-validity", 40, 2), []), (MessageRef("Other", "o", 41, 5), [])])
    assert store.recorded_uids("INBOX", 41, list(range(1, 1301))) == set(recorded)
    assert store.recorded_uids("INBOX", 40, [1, 2, 3]) == {2}
    assert store.recorded_uids("Other", 41, [4, 5, 6]) == {5}
    assert store.recorded_uids("INBOX", 41, []) == set()


def test_failed_messages_are_recorded_and_do_not_block_a_retry(store: Store) -> None:
    """record_failed keeps the error; the same message can still be processed later."""
    ref = MessageRef.for_bytes(b"garbage", "INBOX", 1, 3)
    failed_id = store.record_failed(ref, "cannot parse: empty message")
    with store.engine.connect() as conn:
        query = sa.text("SELECT status, error, uid FROM failed_message WHERE id = :i")
        row = conn.execute(query, {"i": failed_id}).one()
    assert tuple(row) == ("quarantined", "cannot parse: empty message", 3)
    assert not store.seen(ref)
    assert not store.record_message(ref, []).duplicate


def test_migrations_match_the_models(store: Store) -> None:
    """The Alembic migrations produce exactly the schema the models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), METADATA) == []


def test_migration_downgrade_and_upgrade_again(db_url: str) -> None:
    """The migrations go down to nothing and up again; upgrading twice is a no-op."""
    engine = create_store_engine(url=db_url)
    try:
        head = head_revision()
        assert upgrade(engine) == (head, head)
        downgrade(engine, "base")
        assert not sa.inspect(engine).has_table("suppression")
        assert current_revision(engine) is None
        assert upgrade(engine) == (None, head)
    finally:
        engine.dispose()


def test_head_read_from_the_files_is_alembics_head() -> None:
    """The head found without Alembic (for a start-up that skips it) is the one Alembic finds."""
    assert head_revision_of_files() == head_revision()


def test_stored_revision_follows_the_migrations(db_url: str) -> None:
    """The plain query on the version table tells what Alembic tells: none before the first
    migration, each revision on the way up."""
    engine = create_store_engine(url=db_url)
    try:
        upgrade(engine)
        downgrade(engine, "base")
        assert stored_revision(engine) is None
        upgrade(engine, "0001")
        assert stored_revision(engine) == current_revision(engine) == "0001"
        upgrade(engine)
        assert stored_revision(engine) == current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_a_migrated_database_opens_without_importing_alembic(tmp_path: Any) -> None:
    """open_store on a database at head asks Alembic nothing (its import costs most of a second at
    the daemon's start); on a database behind head it still migrates."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_store_engine(url=url)
    try:
        upgrade(engine, "0001")
    finally:
        engine.dispose()
    program = (
        "import sys\n"
        "from processor.config import DatabaseSettings, Settings\n"
        "from processor.store import open_store\n"
        f"store = open_store(Settings(database=DatabaseSettings(url={url!r})))\n"
        "store.close()\n"
        "print('alembic' in sys.modules)\n"
    )
    behind = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert behind.stdout.split()[-1] == "True"  # 0001 -> head: Alembic did the work
    engine = create_store_engine(url=url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    at_head = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert at_head.stdout.split()[-1] == "False"


def test_unmigrated_database_is_refused_without_migrate(tmp_path: Any) -> None:
    """open_store(migrate=False) on an empty database names the command that fixes it."""
    settings = Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'new.db'}"))
    with pytest.raises(StoreError, match="run `bounce-processor db upgrade`"):
        open_store(settings, migrate=False)


def test_ping_tells_up_from_down(store: Store) -> None:
    """ping() returns on a reachable database and raises StoreError for an unreachable server."""
    store.ping()
    down = Store(create_store_engine(url="postgresql+psycopg://bp:pw@127.0.0.1:1/none"))
    try:
        with pytest.raises(StoreError, match="database error"):
            down.ping()
    finally:
        down.close()


def test_unusable_databases_give_one_clear_error(tmp_path: Any) -> None:
    """A missing directory, a refused server and an unknown URL scheme raise StoreError without secrets."""
    with pytest.raises(StoreError, match=r"directory .* does not exist"):
        open_store(url=f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(StoreError) as caught:
        open_store(url="postgresql+psycopg://bp:s3cret-pw@127.0.0.1:1/none")
    assert "s3cret-pw" not in str(caught.value)
    assert "cannot migrate the database" in str(caught.value)
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        open_store(url="mysql://x@localhost/db")


def test_sqlite_is_configured_for_concurrency(tmp_path: Any) -> None:
    """SQLite connections use WAL, a busy timeout, foreign keys and the configured synchronous mode."""
    store = open_store(url=f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with store.engine.connect() as conn:
            pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}
    finally:
        store.close()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1, "synchronous": 2}


def test_killed_postgresql_connections_are_replaced(postgres_url: str) -> None:
    """After the server drops every connection (as on a restart), the next write and read succeed."""
    from tests.databases import empty_store_tables

    def kill_connections() -> None:
        admin = sa.create_engine(postgres_url)
        with admin.connect() as conn:
            killed = conn.execute(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
        admin.dispose()
        assert killed >= 1

    empty_store_tables(postgres_url)
    store = open_store(url=postgres_url)
    try:
        store.add("before@example.org")
        kill_connections()
        store.record_message(message(), [verdict("after@example.org")])
        kill_connections()
        assert store.is_suppressed("before@example.org") is not None
        assert store.check_many(["after@example.org"]).suppressed
    finally:
        store.close()


def test_nul_characters_never_reach_the_database(store: Store) -> None:
    """A NUL in a report is stored replaced; a NUL in an argument is a QueryError (PostgreSQL cannot store it)."""
    v = verdict("nul@example.org")
    event = type(v.event)(v.event.kind, recipient="nul@example.org", status="5.1.1", diagnostic="550 bad\x00byte")
    store.record_message(message(), [type(v)(event, "userunknown\x00", v.bounce_type, "rule\x00id")])
    [stored] = store.history("nul@example.org")
    assert (stored.diagnostic, stored.reason) == ("550 bad\ufffdbyte", "userunknown\ufffd")
    assert stored.rule_id == "rule\ufffdid"
    entry = store.is_suppressed("nul@example.org")
    assert entry is not None and entry.reason == "userunknown\ufffd"
    with pytest.raises(QueryError, match="scope contains a NUL character"):
        store.is_suppressed("nul@example.org", scope="a\x00b")
    with pytest.raises(QueryError, match="reason contains a NUL character"):
        store.list_entries(EntryFilter(reason="x\x00"))
    with pytest.raises(QueryError, match="note contains a NUL character"):
        store.add("other@example.org", note="\x00")
