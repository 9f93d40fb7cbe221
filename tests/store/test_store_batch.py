"""A batch recorded in one ``record_messages`` call leaves the database as the same messages
recorded one by one: the batch decides in memory, each verdict seeing the events and suppression
changes of the verdicts before it as if they had been written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from processor.config import DatabaseSettings, PolicySettings, Settings
from processor.records import Action, BounceType, EventKind, Verdict
from processor.store import MessageRef, RecordResult, Store, open_store
from processor.timestamps import raw_time
from tests.databases import PostgresDatabases
from tests.store.helpers import soft, verdict

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def two_stores(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Opens two stores with a policy on two new databases of the engine; all closed (and
    dropped) at the end."""
    made: list[Store] = []
    postgres: PostgresDatabases | None = request.getfixturevalue("postgres") if engine_name == "postgresql" else None

    def factory(**policy: Any) -> tuple[Store, Store]:
        for n in range(2):
            url = f"sqlite:///{tmp_path / f'store{n}.db'}" if postgres is None else postgres.create()
            made.append(open_store(Settings(database=DatabaseSettings(url=url), policy=PolicySettings(**policy))))
        return made[0], made[1]

    yield factory
    for store in made:
        url = store.engine.url.render_as_string(hide_password=False)
        store.close()
        if postgres is not None:
            postgres.drop(url)


def _message(n: int, received: datetime, body: bytes | None = None) -> MessageRef:
    return MessageRef.for_bytes(body or b"message %d" % n, "INBOX", 7, n, received)


def _history(store: Store) -> None:
    """What the addresses had before the batch: an expired entry, a manual one, a removal, soft
    failures counted earlier."""
    store.add("expired@example.org", expires_at=NOW - timedelta(days=1), now=NOW - timedelta(days=30))
    store.add("manual@example.org", now=NOW - timedelta(days=30))
    store.remove("removed@example.org", allow_days=0, now=NOW - timedelta(hours=1))
    for n, days in ((1, 2), (2, 1)):
        store.record_message(_message(n, NOW - timedelta(days=days), b"earlier %d" % n),
                             [soft("soft2@example.org")], now=NOW - timedelta(days=days))


def _batch() -> list[tuple[MessageRef, list[Verdict]]]:
    at = NOW - timedelta(minutes=30)
    complaint = verdict("expired@example.org", BounceType.COMPLAINT, EventKind.COMPLAINT, reason="abuse",
                        status="", feedback_type="abuse")
    delay = verdict("late@example.org", BounceType.SOFT, EventKind.DELAY, reason="delayed", status="4.4.7")
    return [
        (_message(10, at), [soft("soft2@example.org")]),  # the third within the window: suppressed
        (_message(11, at), [soft("s3@example.org")]),
        (_message(12, at + timedelta(minutes=1)), [soft("s3@example.org")]),
        (_message(13, at + timedelta(minutes=2)), [soft("s3@example.org")]),  # the third: suppressed
        (_message(14, at + timedelta(minutes=3)), [soft("s3@example.org")]),  # suppressed again: counted in
        (_message(15, at, b"message 10"), [soft("soft2@example.org")]),  # message 10's bytes: a duplicate
        (_message(16, at), [verdict("expired@example.org")]),  # the expired entry begins anew
        (_message(17, at), [complaint]),  # ... and a complaint outranks the hard bounce
        (_message(18, at), [verdict("manual@example.org")]),  # a manual entry keeps its source
        (_message(19, NOW - timedelta(hours=2)), [verdict("removed@example.org")]),  # before the removal
        (_message(20, at), [verdict("removed@example.org")]),  # after it
        (_message(21, at), [verdict("two@example.org"), soft("two@example.org"), verdict("not an address")]),
        (_message(22, at), [delay, soft("late@example.org")]),
        (_message(5, at), []),  # a lower UID last: the position is the highest
    ]


def _state(store: Store, results: list[RecordResult]) -> dict[str, Any]:
    """Every table the recording writes, ids replaced by positions (the two databases' sequences
    may differ), and what the calls returned."""
    with store.engine.connect() as conn:
        events = [dict(row._mapping) for row in conn.execute(sa.text("SELECT * FROM event ORDER BY id"))]
        position = {row.pop("id"): n for n, row in enumerate(events)}
        ledger = {row.id: row.content_hash for row in conn.execute(sa.text("SELECT id, content_hash FROM "
                                                                          "processed_message"))}
        for row in events:
            row["message_ref"] = ledger.get(row["message_ref"])
        entries = []
        for row in conn.execute(sa.text("SELECT * FROM suppression ORDER BY address, scope")):
            values = dict(row._mapping)
            values.pop("id")
            values["last_event_id"] = position.get(values["last_event_id"])
            entries.append(values)
        tables = {name: [tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY {order}"))]
                  for name, order in (("daily_count", "dimension, category, day, key"),
                                      ("mailbox_state", "mailbox"))}
        messages = [tuple(row) for row in conn.execute(sa.text(
            "SELECT mailbox, uidvalidity, uid, content_hash, received_at, recorded_at, event_count "
            "FROM processed_message ORDER BY uid"))]
    returned = [(r.duplicate, ledger.get(r.message_ref) if not r.duplicate else None,
                 [(d.address, d.action, d.scope, d.expires_at, d.explanation, d.source, d.counted)
                  for d in r.decisions],
                 [position[i] for i in r.event_ids]) for r in results]
    return {"events": events, "entries": entries, "messages": messages, "returned": returned, **tables}


@pytest.mark.parametrize("policy", [{}, {"hard_ttl_days": 0, "bounce_scope": "sender_domain"}])
def test_a_batch_leaves_what_the_same_messages_one_by_one_leave(two_stores: Any, policy: dict[str, Any]) -> None:
    """Soft failures reaching the threshold inside the batch, an entry suppressed again, an expired
    entry begun anew then outranked, a manual entry, a removal, a duplicate, several verdicts per
    message (and, with a time-to-live of zero, an entry that expires as it is made)."""
    one_by_one, batched = two_stores(**policy)
    for store in (one_by_one, batched):
        _history(store)
        store.set_mailbox_state("INBOX", 7, 9, now=NOW)
    singles = [one_by_one.record_message(ref, verdicts, now=NOW) for ref, verdicts in _batch()]
    together = batched.record_messages(_batch(), now=NOW)
    expected, got = _state(one_by_one, singles), _state(batched, together)
    assert [r[0] for r in got["returned"]].count(True) == 1
    assert any(e["event_count"] == 2 for e in got["entries"])
    for name in expected:
        assert got[name] == expected[name], name
    if policy:
        return
    entries = {e["address"]: e for e in got["entries"]}
    assert (entries["manual@example.org"]["source"], entries["manual@example.org"]["event_count"]) == ("manual", 2)
    renewed = entries["expired@example.org"]
    assert (renewed["source"], renewed["event_count"], raw_time(renewed["first_seen"])) == ("complaint", 2, NOW)
    assert (entries["s3@example.org"]["event_count"], entries["soft2@example.org"]["event_count"]) == (2, 1)
    assert [a for _, _, decisions, _ in got["returned"] for _, a, *_ in decisions] == [
        Action.SUPPRESS, Action.COUNT, Action.COUNT, Action.SUPPRESS, Action.SUPPRESS, Action.SUPPRESS,
        Action.SUPPRESS, Action.SUPPRESS, Action.IGNORE, Action.SUPPRESS, Action.SUPPRESS, Action.COUNT,
        Action.IGNORE, Action.IGNORE, Action.COUNT]
