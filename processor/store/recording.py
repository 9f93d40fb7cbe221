"""The pipeline's write: one message's ledger row, its events and suppression changes.

``record_messages`` runs in ONE transaction per batch (one commit, one fsync); inside it each
verdict is decided from the address's history (``processor.decide.decide``) under the
address's lock, so two writers recording the same address count exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from processor.addresses import AddressError, address_domain
from processor.config import PolicySettings
from processor.decide import ActiveEntry, History, Source, decide, outranks, scope_for
from processor.records import Action, Decision, Verdict
from processor.store._db import (
    EVENT_INSERT_COLUMNS,
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

_INSERT_EVENT_SQL = {
    pg: f"INSERT INTO event ({', '.join(EVENT_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s' if pg else '?'] * len(EVENT_INSERT_COLUMNS))}) RETURNING id"
    for pg in (False, True)
}


@dataclass(frozen=True, slots=True)
class _Context:
    """The message a verdict being recorded belongs to."""

    message: MessageRef
    ledger_id: int
    received: datetime
    now: datetime


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
    q = db.mark()

    def work(conn: Connection) -> list[RecordResult | None]:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            db.lock(conn, (a for _, items in prepared for _, a, _ in items))
            tally, kept = DailyTally(), KeptReports(keep_report_kib)
            results: list[RecordResult | None] = []
            for message, items in prepared:
                received = as_utc(message.received_at) or at_now
                cursor.execute(
                    "INSERT INTO processed_message (mailbox, uidvalidity, uid, content_hash, received_at, "
                    f"recorded_at, event_count) VALUES ({db.mark(7)}) ON CONFLICT DO NOTHING RETURNING id",
                    (message.mailbox, message.uidvalidity, message.uid, message.content_hash,
                     db.ts(message.received_at) if message.received_at else None, db.ts(at_now),
                     len(items)),
                )
                inserted = cursor.fetchone()
                if inserted is None:
                    results.append(None)
                    continue
                context = _Context(message, inserted[0], received, at_now)
                kept.add(message, at_now)
                decisions: list[Decision] = []
                event_ids: list[int] = []
                for verdict, address, error in items:
                    decision, event_id = _record_verdict(
                        db, policy, cursor, verdict, address=address, error=error, context=context, outbox=outbox)
                    tally.add(decision, received)
                    decisions.append(decision)
                    event_ids.append(event_id)
                if advance_mailbox and message.uid is not None and message.uidvalidity is not None:
                    cursor.execute(
                        f"UPDATE mailbox_state SET last_uid = {q}, updated_at = {q} "
                        f"WHERE mailbox = {q} AND uidvalidity = {q} AND last_uid < {q}",
                        (message.uid, db.ts(at_now), message.mailbox, message.uidvalidity, message.uid),
                    )
                results.append(RecordResult(False, inserted[0], tuple(decisions), tuple(event_ids)))
            tally.flush(cursor, db.pg)
            kept.flush(cursor, db.pg)
            return results
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


def _record_verdict(
    db: Database, policy: PolicySettings, cursor: Any, verdict: Verdict, *, address: str, error: str, context: _Context,
    outbox: Outbox | None = None,
) -> tuple[Decision, int]:
    received, now = context.received, context.now
    scope = scope_for(verdict, policy)
    if not address:
        why = error or "the report names no recipient"
        decision = Decision(verdict, "", Action.IGNORE, scope, explanation=why)
        return decision, _insert_event(db, cursor, decision, context)
    history, row = _history(db, policy, cursor, address, scope=scope, at=received, now=now)
    decision = decide(verdict, history, policy, now, received_at=received)
    event_id = _insert_event(db, cursor, decision, context)
    if decision.action is Action.SUPPRESS:
        _suppress(db, cursor, decision, row=row, event_id=event_id, now=now)
        if outbox is not None and outbox.enabled and (row is None or not row.active(now)):
            change = Change("added", address, scope, decision.source or Source.BOUNCE, verdict.reason,
                            str(verdict.bounce_type), now, decision.expires_at)
            outbox.enqueue_raw(cursor, [change], placeholder=db.mark(), ts=db.ts)
    return decision, event_id


def _history(
    db: Database, policy: PolicySettings, cursor: Any, address: str, *, scope: str, at: datetime, now: datetime
) -> tuple[History, Entry | None]:
    """The address's entry in the scope (even if expired) and the policy's view of its history."""
    q = db.mark()
    cursor.execute(f"{RAW_SELECT} WHERE address = {q} AND scope = {q}", (address, scope))
    found = cursor.fetchone()
    row = raw_entry(found) if found is not None else None
    entry = None
    if row is not None and row.active(now):
        entry = ActiveEntry(row.source, row.reason, row.bounce_type, row.expires_at)
    window = timedelta(days=policy.soft_window_days)
    cursor.execute(
        f"SELECT kind, received_at, expires_at FROM event WHERE address = {q} AND scope = {q} AND "
        f"((counted = {q} AND received_at > {q} AND received_at < {q}) OR kind = '{StoreKind.MANUAL_REMOVE}')",
        (address, scope, True, db.ts(at - window), db.ts(at + window)),
    )
    soft: list[datetime] = []
    removed_at: datetime | None = None
    allow_until: datetime | None = None
    for kind, received_at, expires_at in cursor.fetchall():
        when = raw_time(received_at)
        assert when is not None
        if kind == StoreKind.MANUAL_REMOVE:
            if removed_at is None or when > removed_at:
                removed_at, allow_until = when, raw_time(expires_at)
        else:
            soft.append(when)
    history = History(address, scope, entry, tuple(soft), removed_at, allow_until)
    return history, row


def _insert_event(db: Database, cursor: Any, decision: Decision, context: _Context) -> int:
    message = context.message
    verdict = decision.verdict
    event = verdict.event
    ts = db.ts
    values = {
        "message_ref": context.ledger_id,
        "kind": str(event.kind),
        "address": decision.address,
        "domain": address_domain(decision.address),
        "recipient": event.recipient,
        "scope": decision.scope,
        "mailbox": message.mailbox,
        "uidvalidity": message.uidvalidity,
        "uid": message.uid,
        "original_message_id": event.original.message_id,
        "original_from": event.original.from_addr,
        "dsn_action": event.dsn_action,
        "status": event.status,
        "reply_code": event.reply_code,
        "smtp_command": event.smtp_command,
        "diagnostic": event.diagnostic,
        "diagnostic_type": event.diagnostic_type,
        "remote_mta": event.remote_mta,
        "reporting_mta": event.reporting_mta,
        "mta": event.mta,
        "feedback_type": event.feedback_type,
        "reason": verdict.reason,
        "bounce_type": str(verdict.bounce_type),
        "rule_id": verdict.rule_id,
        "decision": str(decision.action),
        "counted": decision.counted,
        "expires_at": ts(decision.expires_at) if decision.expires_at is not None else None,
        "explanation": decision.explanation,
        "actor": "",
        "received_at": ts(context.received),
        "recorded_at": ts(context.now),
    }
    cursor.execute(_INSERT_EVENT_SQL[db.pg], tuple(clean(values[name]) for name in EVENT_INSERT_COLUMNS))
    event_id: int = cursor.fetchone()[0]
    return event_id


def _suppress(
    db: Database, cursor: Any, decision: Decision, *, row: Entry | None, event_id: int, now: datetime
) -> None:
    verdict = decision.verdict
    q = db.mark()
    ts = db.ts
    source, reason, bounce_type = decision.source or Source.BOUNCE, clean(verdict.reason), str(verdict.bounce_type)
    expires = ts(decision.expires_at) if decision.expires_at is not None else None
    if row is not None:
        if row.active(now):
            current = ActiveEntry(row.source, row.reason, row.bounce_type, row.expires_at)
            if not outranks(source, bounce_type, current):
                source, reason, bounce_type = row.source, row.reason, row.bounce_type
            cursor.execute(
                f"UPDATE suppression SET source = {q}, reason = {q}, bounce_type = {q}, last_seen = {q}, "
                f"expires_at = {q}, event_count = event_count + 1, last_event_id = {q} WHERE id = {q}",
                (source, reason, bounce_type, ts(now), expires, event_id, row.id),
            )
        else:
            cursor.execute(
                f"UPDATE suppression SET source = {q}, reason = {q}, bounce_type = {q}, first_seen = {q}, "
                f"last_seen = {q}, expires_at = {q}, event_count = 1, last_event_id = {q}, note = '' "
                f"WHERE id = {q}",
                (source, reason, bounce_type, ts(now), ts(now), expires, event_id, row.id),
            )
        if cursor.rowcount:
            return
    cursor.execute(
        f"INSERT INTO suppression ({', '.join(SUPPRESSION_INSERT_COLUMNS)}, last_event_id) "
        f"VALUES ({db.mark(len(SUPPRESSION_INSERT_COLUMNS) + 1)})",
        (decision.address, address_domain(decision.address), decision.scope, source, reason, bounce_type,
         ts(now), ts(now), expires, 1, "", event_id),
    )
