"""The pipeline's write: one message's ledger row, its events and suppression changes.

``record_messages`` runs in ONE transaction per batch (one commit, one fsync); inside it each
verdict is decided from the address's history (``processor.decide.decide``) under the
address's lock, so two writers recording the same address count exactly.

The batch makes a fixed number of statements, not a few per message (on PostgreSQL each is a
round trip): the ledger rows in one INSERT; the history of every (address, scope) of the batch
read at once (two queries); the verdicts decided in order in memory, each seeing the events and
suppression changes of the verdicts before it in the batch as if they had been written; then one
write per table (events, new and changed suppressions, outbox, daily counts, kept messages, the
mailbox's position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from processor.addresses import AddressError, address_domain
from processor.config import PolicySettings
from processor.decide import ActiveEntry, History, Source, decide, outranks, scope_for
from processor.records import Action, Decision, Verdict
from processor.store._db import (
    EVENT_INSERT_COLUMNS,
    EVENT_INSERT_TYPES,
    RAW_SELECT,
    SUPPRESSION_INSERT_COLUMNS,
    Database,
    as_utc,
    clean,
    log,
    raw_entry,
    utcnow,
)
from processor.store.daily import DailyTally
from processor.store.kept import KeptReports
from processor.store.ledger import ledger_id
from processor.store.outbox import Change, Outbox
from processor.store.types import Entry, MessageRef, RecordResult, StoreKind
from processor.timestamps import raw_time

_LEDGER_COLUMNS = ("mailbox", "uidvalidity", "uid", "content_hash", "received_at", "recorded_at", "event_count")
_LEDGER_TYPES = ("text", "bigint", "bigint", "text", "timestamp", "timestamp", "integer")
_LEDGER_KEY = "mailbox, uidvalidity, uid, content_hash"
_INSERT_EVENT_SQL = f"INSERT INTO event ({', '.join(EVENT_INSERT_COLUMNS)}) VALUES ({{marks}})"
_HISTORY_COLUMNS = "kind, received_at, expires_at, counted"
_HISTORY_WHERE = (f"(counted = {{t}} AND received_at > {{lo}} AND received_at < {{hi}}) "
                  f"OR kind = '{StoreKind.MANUAL_REMOVE}'")
_UPDATE_SET = (
    "source = {v}source, reason = {v}reason, bounce_type = {v}bounce_type, last_seen = {v}last_seen, "
    "expires_at = {v}expires_at, last_event_id = {v}last_event_id, "
    "first_seen = CASE WHEN {v}restart THEN {v}first_seen ELSE {s}first_seen END, "
    "note = CASE WHEN {v}restart THEN '' ELSE {s}note END, "
    "event_count = CASE WHEN {v}restart THEN {v}added ELSE {s}event_count + {v}added END"
)
_ENTRY_TYPES = ("text", "text", "text", "text", "text", "text", "timestamp", "timestamp", "timestamp", "integer",
                "text", "bigint")
_UPDATE_FIELDS = ("source", "reason", "bounce_type", "last_seen", "expires_at", "last_event_id", "restart",
                  "first_seen", "added")
_EVENT_TEXTS = ("kind", "address", "domain", "recipient", "scope", "mailbox", "original_message_id", "original_from",
                "dsn_action", "status", "reply_code", "smtp_command", "diagnostic", "diagnostic_type", "remote_mta",
                "reporting_mta", "mta", "feedback_type", "reason", "bounce_type", "rule_id", "decision",
                "explanation")
"""The text values of an event row, in the order ``_Batch._event`` gathers them."""
if ("message_ref", *_EVENT_TEXTS[:6], "uidvalidity", "uid", *_EVENT_TEXTS[6:22], "counted", "expires_at",
        _EVENT_TEXTS[22], "actor", "received_at", "recorded_at") != EVENT_INSERT_COLUMNS:
    raise RuntimeError("the event table's columns changed: _Batch._event must list a row's values in their order")


@dataclass(slots=True)
class _Row:
    """A suppression entry as the batch has left it so far (``Entry`` before the batch's changes)."""

    id: int | None
    """The row in the database when the batch started (None: the batch inserts it)."""
    source: str
    reason: str
    bounce_type: str
    first_seen: datetime
    last_seen: datetime
    expires_at: datetime | None
    event_count: int
    note: str
    last_event: int = -1
    """Index (in the batch's events) of the event that changed it last; -1: none of the batch."""
    restart: bool = False
    """The batch found it expired and began it anew (first_seen, note and the count reset)."""
    added: int = 0
    """Events of the batch counted into it (since the restart, if any)."""

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    @classmethod
    def of(cls, entry: Entry) -> _Row:
        return cls(entry.id, entry.source, entry.reason, entry.bounce_type, entry.first_seen, entry.last_seen,
                   entry.expires_at, entry.event_count, entry.note)


@dataclass(slots=True)
class _Key:
    """What the batch knows of one (address, scope): its entry and the events that count."""

    row: _Row | None = None
    changed: bool = False
    events: list[tuple[str, datetime, datetime | None]] = field(default_factory=list)
    """(kind, received_at, expires_at) of the counted events and manual removals near the batch's
    times, the batch's own counted events included."""


def record_messages(
    db: Database,
    policy: PolicySettings,
    messages: Sequence[tuple[MessageRef, Sequence[Verdict]]],
    *,
    now: datetime | None = None,
    advance_mailbox: bool = True,
    keep_report_kib: int = 0,
    outbox: Outbox | None = None,
    addresses: Sequence[Sequence[tuple[str, str]] | None] | None = None,
) -> list[RecordResult]:
    """Several messages in ONE transaction (all or none are committed): per message the ledger
    row, an event per verdict (with the policy's decision), the suppression changes, the daily
    counts (``daily.DailyTally``) and the first ``keep_report_kib`` KiB of the message. A
    duplicate (also within the batch) counts nothing. ``addresses``: see ``Store.record_messages``."""
    at_now = as_utc(now) or utcnow()
    prepared: list[tuple[MessageRef, list[tuple[Verdict, str, str]]]] = []
    for index, (message, verdicts) in enumerate(messages):
        given = addresses[index] if addresses is not None else None
        if given is not None:
            if len(given) != len(verdicts):
                raise ValueError(f"{len(given)} addresses for {len(verdicts)} verdicts")
            prepared.append((message, [(v, a, e) for v, (a, e) in zip(verdicts, given, strict=True)]))
            continue
        normalised: list[tuple[Verdict, str, str]] = []
        for verdict in verdicts:
            try:
                normalised.append((verdict, db.normalise(verdict.event.recipient), ""))
            except AddressError as exc:
                normalised.append((verdict, "", str(exc)))
        prepared.append((message, normalised))

    def work(conn: Connection) -> list[RecordResult | None]:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            db.lock(conn, (a for _, items in prepared for _, a, _ in items))
            return _Batch(db, policy, cursor, at_now, outbox).record(prepared, advance_mailbox, keep_report_kib)
        finally:
            cursor.close()

    written = db.write(work)
    final: list[RecordResult] = []
    for (message, _), result in zip(prepared, written, strict=True):
        if result is not None:
            final.append(result)
            continue
        earlier = ledger_id(db, message)
        log.info("store.duplicate", mailbox=message.mailbox, uid=message.uid, ledger=earlier)
        final.append(RecordResult(True, earlier or 0))
    return final


class _Batch:
    """One ``record_messages`` transaction on the driver's cursor."""

    def __init__(self, db: Database, policy: PolicySettings, cursor: Any, now: datetime,
                 outbox: Outbox | None) -> None:
        self.db, self.policy, self.cursor, self.now, self.outbox = db, policy, cursor, now, outbox
        self.stamp = db.ts(now)
        self.window = timedelta(days=policy.soft_window_days)
        self.events: list[list[Any]] = []
        self.keys: dict[tuple[str, str], _Key] = {}
        self.changes: list[Change] = []

    def record(
        self, prepared: list[tuple[MessageRef, list[tuple[Verdict, str, str]]]], advance_mailbox: bool,
        keep_report_kib: int,
    ) -> list[RecordResult | None]:
        db, policy, now = self.db, self.policy, self.now
        ledger = self._insert_ledger(prepared)
        received_of = [as_utc(message.received_at) or now for message, _ in prepared]
        windows: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for (_, items), ledger_row, received in zip(prepared, ledger, received_of, strict=True):
            if ledger_row is None:
                continue
            for verdict, address, _ in items:
                if address:
                    key = (address, scope_for(verdict, policy))
                    lo, hi = windows.get(key, (received, received))
                    windows[key] = (min(lo, received), max(hi, received))
        self._read_histories(windows)
        tally, kept = DailyTally(), KeptReports(keep_report_kib)
        outcome: list[tuple[int, list[Decision], list[int]] | None] = []
        positions: dict[tuple[str, int], int] = {}
        for (message, items), ledger_row, received in zip(prepared, ledger, received_of, strict=True):
            if ledger_row is None:
                outcome.append(None)
                continue
            kept.add(message, now)
            stamp = db.ts(received)
            decisions: list[Decision] = []
            indexes: list[int] = []
            for verdict, address, error in items:
                decision = self._decide(verdict, address, error, received)
                indexes.append(self._event(decision, message, ledger_row, stamp))
                if address:
                    self._apply(decision, received, indexes[-1])
                tally.add(decision, received)
                decisions.append(decision)
            if advance_mailbox and message.uid is not None and message.uidvalidity is not None:
                place = (message.mailbox, message.uidvalidity)
                positions[place] = max(positions.get(place, message.uid), message.uid)
            outcome.append((ledger_row, decisions, indexes))
        event_ids = self._insert_events()
        self._write_suppressions(event_ids)
        if self.changes and self.outbox is not None:
            self.outbox.enqueue_raw(self.cursor, self.changes, placeholder=db.mark(), ts=db.ts)
        tally.flush(self.cursor, db.pg)
        kept.flush(self.cursor, db.pg)
        q = db.mark()
        for (mailbox, uidvalidity), uid in positions.items():
            self.cursor.execute(
                f"UPDATE mailbox_state SET last_uid = {q}, updated_at = {q} "
                f"WHERE mailbox = {q} AND uidvalidity = {q} AND last_uid < {q}",
                (uid, self.stamp, mailbox, uidvalidity, uid),
            )
        return [
            None if done is None else RecordResult(False, done[0], tuple(done[1]), tuple(event_ids[i] for i in done[2]))
            for done in outcome
        ]

    # ----------------------------------------------------------------- reads

    def _insert_ledger(self, prepared: list[tuple[MessageRef, list[Any]]]) -> list[int | None]:
        """The ledger rows, ON CONFLICT DO NOTHING: each message's new row id, None for a duplicate
        (the inserted rows are told apart by their key: the content hash is unique in the table)."""
        db, ts, stamp = self.db, self.db.ts, self.stamp
        rows = [(m.mailbox, m.uidvalidity, m.uid, m.content_hash, ts(m.received_at) if m.received_at else None, stamp,
                 len(items)) for m, items in prepared]
        head = f"INSERT INTO processed_message ({', '.join(_LEDGER_COLUMNS)})"
        tail = f" ON CONFLICT DO NOTHING RETURNING id, {_LEDGER_KEY}"
        found: dict[tuple[Any, ...], int] = {}
        if db.pg:
            arrays = ", ".join(f"%b::{t}[]" for t in _LEDGER_TYPES)
            self.cursor.execute(f"{head} SELECT * FROM unnest({arrays}){tail}",
                                [list(column) for column in zip(*rows, strict=True)])
            chunks = [self.cursor.fetchall()]
        else:
            one = f"({db.mark(len(_LEDGER_COLUMNS))})"
            chunks = []
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                self.cursor.execute(f"{head} VALUES {', '.join([one] * len(chunk))}{tail}",
                                    [v for row in chunk for v in row])
                chunks.append(self.cursor.fetchall())
        for chunk_rows in chunks:
            for row_id, *key in chunk_rows:
                found[tuple(key)] = row_id
        result: list[int | None] = []
        for row in rows:
            result.append(found.pop(row[:4], None))  # a second copy within the batch is the duplicate
        return result

    def _read_histories(self, windows: dict[tuple[str, str], tuple[datetime, datetime]]) -> None:
        """The entry of each (address, scope) and its counted events near the batch's times (and
        its manual removals): two queries on PostgreSQL, two per key on SQLite (in process)."""
        if not windows:
            return
        db, cursor, keys = self.db, self.cursor, self.keys
        window = timedelta(days=self.policy.soft_window_days)
        for key in windows:
            keys[key] = _Key()
        names = sorted(windows)  # index probes in key order
        if db.pg:
            cursor.execute(
                f"SELECT s.* FROM unnest(%b::varchar[], %b::varchar[]) AS q(a, sc) "
                f"CROSS JOIN LATERAL ({RAW_SELECT} WHERE address = q.a AND scope = q.sc) AS s",
                ([a for a, _ in names], [s for _, s in names]),
            )
            entries = cursor.fetchall()
            cursor.execute(
                f"SELECT q.a, q.sc, e.* FROM unnest(%b::varchar[], %b::varchar[], %b::timestamp[], %b::timestamp[]) "
                f"AS q(a, sc, lo, hi) CROSS JOIN LATERAL (SELECT {_HISTORY_COLUMNS} FROM event "
                f"WHERE address = q.a AND scope = q.sc AND ({_HISTORY_WHERE.format(t='true', lo='q.lo', hi='q.hi')})"
                f") AS e",
                ([a for a, _ in names], [s for _, s in names], [db.ts(windows[k][0] - window) for k in names],
                 [db.ts(windows[k][1] + window) for k in names]),
            )
            events = cursor.fetchall()
        else:
            entries, events = [], []
            where = _HISTORY_WHERE.format(t="?", lo="?", hi="?")
            for address, scope in names:
                lo, hi = windows[(address, scope)]
                cursor.execute(f"{RAW_SELECT} WHERE address = ? AND scope = ?", (address, scope))
                entries.extend(cursor.fetchall())
                cursor.execute(f"SELECT ?, ?, {_HISTORY_COLUMNS} FROM event WHERE address = ? AND scope = ? AND "
                               f"({where})", (address, scope, address, scope, True, db.ts(lo - window),
                                              db.ts(hi + window)))
                events.extend(cursor.fetchall())
        for found in entries:
            entry = raw_entry(found)
            keys[(entry.address, entry.scope)].row = _Row.of(entry)
        for address, scope, kind, received_at, expires_at, _ in events:
            when = raw_time(received_at)
            assert when is not None
            keys[(address, scope)].events.append((kind, when, raw_time(expires_at)))

    # ----------------------------------------------------------------- the policy

    def _decide(self, verdict: Verdict, address: str, error: str, received: datetime) -> Decision:
        scope = scope_for(verdict, self.policy)
        if not address:
            return Decision(verdict, "", Action.IGNORE, scope, explanation=error or "the report names no recipient")
        known = self.keys[(address, scope)]
        row, now = known.row, self.now
        entry = None
        if row is not None and row.active(now):
            entry = ActiveEntry(row.source, row.reason, row.bounce_type, row.expires_at)
        window = self.window
        soft: list[datetime] = []
        removed_at: datetime | None = None
        allow_until: datetime | None = None
        for kind, when, expires_at in known.events:
            if kind == StoreKind.MANUAL_REMOVE:
                if removed_at is None or when > removed_at:
                    removed_at, allow_until = when, expires_at
            elif received - window < when < received + window:
                soft.append(when)
        history = History(address, scope, entry, tuple(soft), removed_at, allow_until)
        return decide(verdict, history, self.policy, now, received_at=received)

    def _apply(self, decision: Decision, received: datetime, index: int) -> None:
        """What the event and its suppression change do to the history of later verdicts."""
        known = self.keys[(decision.address, decision.scope)]
        if decision.counted:
            known.events.append((str(decision.verdict.event.kind), received, decision.expires_at))
        if decision.action is not Action.SUPPRESS:
            return
        verdict, now, row = decision.verdict, self.now, known.row
        source, reason, bounce_type = decision.source or Source.BOUNCE, clean(verdict.reason), str(verdict.bounce_type)
        outbox = self.outbox
        if outbox is not None and outbox.enabled and (row is None or not row.active(now)):
            self.changes.append(Change("added", decision.address, decision.scope, source, verdict.reason,
                                       str(verdict.bounce_type), now, decision.expires_at))
        known.changed = True
        if row is None:
            known.row = _Row(None, source, reason, bounce_type, now, now, decision.expires_at, 1, "", index, False, 1)
            return
        if row.active(now):
            if not outranks(source, bounce_type, ActiveEntry(row.source, row.reason, row.bounce_type, row.expires_at)):
                source, reason, bounce_type = row.source, row.reason, row.bounce_type
            row.event_count += 1
            row.added += 1
        else:
            row.first_seen, row.event_count, row.note, row.restart, row.added = now, 1, "", True, 1
        row.source, row.reason, row.bounce_type = source, reason, bounce_type
        row.last_seen, row.expires_at, row.last_event = now, decision.expires_at, index

    # ----------------------------------------------------------------- writes

    def _event(self, decision: Decision, message: MessageRef, ledger_row: int, received: Any) -> int:
        """Queue the event row of a decision; its index in the batch's events."""
        verdict = decision.verdict
        event = verdict.event
        original = event.original
        address = decision.address
        texts = (str(event.kind), address, address_domain(address), event.recipient, decision.scope,
                 message.mailbox, original.message_id, original.from_addr, event.dsn_action, event.status,
                 event.reply_code, event.smtp_command, event.diagnostic, event.diagnostic_type, event.remote_mta,
                 event.reporting_mta, event.mta, event.feedback_type, verdict.reason, str(verdict.bounce_type),
                 verdict.rule_id, str(decision.action), decision.explanation)
        if "\x00" in "".join(texts):  # rare: one look at all of them, not one per column
            texts = tuple([clean(text) for text in texts])
        expires_at = self.db.ts(decision.expires_at) if decision.expires_at is not None else None
        self.events.append([ledger_row, *texts[:6], message.uidvalidity, message.uid, *texts[6:22], decision.counted,
                            expires_at, texts[22], "", received, self.stamp])
        return len(self.events) - 1

    def _insert_events(self) -> list[int]:
        """Insert the batch's events in order; their ids. PostgreSQL: the ids drawn from the
        table's sequence in one query, then one binary COPY; SQLite: one executemany (in process)."""
        db, cursor, rows = self.db, self.cursor, self.events
        if not rows:
            return []
        if db.pg:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('event', 'id')) FROM generate_series(1, %s)",
                           (len(rows),))
            ids = sorted(int(found[0]) for found in cursor.fetchall())
            db.bulk_insert(cursor, "event", ("id", *EVENT_INSERT_COLUMNS),
                           [(i, *r) for i, r in zip(ids, rows, strict=True)], types=EVENT_INSERT_TYPES)
            return ids
        # AUTOINCREMENT gives each row one more than the largest id the table ever had, and this
        # transaction holds SQLite's write lock: the rows get consecutive ids, in order, the last
        # one last_insert_rowid() (an INSERT ... RETURNING each cost 2.5x the CPU)
        cursor.executemany(_INSERT_EVENT_SQL.format(marks=db.mark(len(EVENT_INSERT_COLUMNS))), rows)
        cursor.execute("SELECT last_insert_rowid()")
        last = int(cursor.fetchone()[0])
        return list(range(last - len(rows) + 1, last + 1))

    def _write_suppressions(self, event_ids: list[int]) -> None:
        """The batch's new entries in one INSERT, its changed ones in one UPDATE (PostgreSQL; an
        UPDATE each on SQLite). An entry gone meanwhile is inserted as the batch left it."""
        db, cursor, ts = self.db, self.cursor, self.db.ts
        new: list[tuple[tuple[str, str], _Row]] = []
        changed: list[tuple[tuple[str, str], _Row]] = []
        for key, known in self.keys.items():
            if known.changed and known.row is not None:
                (changed if known.row.id is not None else new).append((key, known.row))
        if changed:
            values = [{"id": row.id, "source": row.source, "reason": row.reason, "bounce_type": row.bounce_type,
                       "last_seen": ts(row.last_seen),
                       "expires_at": ts(row.expires_at) if row.expires_at is not None else None,
                       "last_event_id": event_ids[row.last_event], "restart": row.restart,
                       "first_seen": ts(row.first_seen), "added": row.added} for _, row in changed]
            updated: set[int] = set()
            if db.pg:
                types = ("bigint", "varchar", "varchar", "varchar", "timestamp", "timestamp", "bigint", "boolean",
                         "timestamp", "integer")
                cursor.execute(
                    f"UPDATE suppression AS s SET {_UPDATE_SET.format(v='v.', s='s.')} FROM unnest("
                    + ", ".join(f"%b::{t}[]" for t in types)
                    + f") AS v(id, {', '.join(_UPDATE_FIELDS)}) WHERE s.id = v.id RETURNING s.id",
                    [[v[name] for v in values] for name in ("id", *_UPDATE_FIELDS)],
                )
                updated = {int(found[0]) for found in cursor.fetchall()}
            else:
                set_sql = _UPDATE_SET.format(v=":", s="")
                for v in values:
                    cursor.execute(f"UPDATE suppression SET {set_sql} WHERE id = :id", v)
                    if cursor.rowcount:
                        updated.add(v["id"])
            for key, row in changed:
                if row.id not in updated:
                    row.first_seen, row.event_count, row.note = self.now, row.added, ""
                    new.append((key, row))
        db.insert_many(
            cursor, f"INSERT INTO suppression ({', '.join(SUPPRESSION_INSERT_COLUMNS)}, last_event_id)", _ENTRY_TYPES,
            [(address, address_domain(address), scope, row.source, row.reason, row.bounce_type, ts(row.first_seen),
              ts(row.last_seen), ts(row.expires_at) if row.expires_at is not None else None, row.event_count, row.note,
              event_ids[row.last_event]) for (address, scope), row in new],
        )
