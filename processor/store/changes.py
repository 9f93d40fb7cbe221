"""Changing the list outside the pipeline: add and remove by hand, purge expired, import.

Every change is an ``event`` row in the same transaction, so ``history`` explains any entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from processor.addresses import AddressError, address_domain
from processor.config import PolicySettings
from processor.decide import GLOBAL_SCOPE, Source
from processor.store._db import (
    ENTRY_COLUMNS,
    EVENT_INSERT_COLUMNS,
    SUPPRESSION_INSERT_COLUMNS,
    Database,
    E,
    S,
    as_utc,
    change_values,
    check_text,
    entry,
    log,
    utcnow,
)
from processor.store.outbox import Change, Outbox
from processor.store.types import Entry, ImportReport, ImportRow, QueryError, Rejected, StoreKind

IMPORT_BATCH_SQLITE = 5000
IMPORT_BATCH_PG = 2000
"""PostgreSQL batches hold one advisory lock per address; keep them well inside the lock table."""
_EV = {name: n for n, name in enumerate(EVENT_INSERT_COLUMNS)}


def _import_event_template() -> tuple[Any, ...]:
    values: dict[str, Any] = {name: "" for name in EVENT_INSERT_COLUMNS}
    values.update(message_ref=None, uidvalidity=None, uid=None, counted=False, expires_at=None,
                  kind=StoreKind.IMPORT, decision="add")
    return tuple(values[name] for name in EVENT_INSERT_COLUMNS)


_IMPORT_EVENT_TEMPLATE = _import_event_template()


@dataclass(frozen=True, slots=True)
class _Pending:
    """One validated import row waiting for its batch."""

    address: str
    scope: str
    source: str
    reason: str
    bounce_type: str
    first_seen: datetime
    expires_at: datetime | None
    note: str
    last_seen: datetime
    event_count: int


def _change_event(
    conn: Connection,
    kind: str,
    decision: str,
    address: str,
    *,
    scope: str,
    now: datetime,
    reason: str = "",
    bounce_type: str = "",
    expires_at: datetime | None = None,
    explanation: str = "",
    actor: str = "",
) -> int:
    event_id: int = conn.execute(
        sa.insert(E)
        .values(**change_values(kind, decision, address, scope=scope, now=now, reason=reason,
                                bounce_type=bounce_type, expires_at=expires_at, explanation=explanation,
                                actor=actor))
        .returning(E.c.id)
    ).scalar_one()
    return event_id


def add(
    db: Database,
    address: str,
    *,
    reason: str,
    scope: str,
    expires_at: datetime | None,
    note: str,
    actor: str,
    source: str,
    bounce_type: str,
    now: datetime | None,
    outbox: Outbox | None,
) -> Entry:
    """``Store.add`` (which holds the defaults): suppress an address by hand (replacing the reason,
    expiry and note of an active entry); a new entry is announced through ``outbox`` in the same
    transaction."""
    check_text(reason=reason, scope=scope, note=note, actor=actor, bounce_type=bounce_type)
    normal = db.normalise(address)
    if source not in Source.ALL:
        raise QueryError(f"unknown source {source!r} (expected one of: {', '.join(Source.ALL)})")
    at_now = as_utc(now) or utcnow()
    expires = as_utc(expires_at)
    if expires is not None and expires <= at_now:
        raise QueryError(f"expiry {expires.isoformat()} is not in the future")

    def work(conn: Connection) -> Entry:
        db.lock(conn, [normal])
        event_id = _change_event(
            conn, StoreKind.MANUAL_ADD, "add", normal, scope=scope, now=at_now, reason=reason,
            bounce_type=bounce_type, expires_at=expires, explanation=note, actor=actor,
        )
        labels = {"source": source, "reason": reason, "bounce_type": bounce_type, "expires_at": expires,
                  "note": note, "last_seen": at_now, "last_event_id": event_id}
        row = conn.execute(
            sa.select(S.c.id, S.c.expires_at, S.c.event_count)
            .where(S.c.address == normal)
            .where(S.c.scope == scope)
        ).first()
        if row is not None:
            if row.expires_at is None or row.expires_at > at_now:
                values = {**labels, "event_count": row.event_count + 1}
            else:
                values = {**labels, "event_count": 1, "first_seen": at_now}
            conn.execute(sa.update(S).where(S.c.id == row.id).values(**values))
        else:
            conn.execute(
                sa.insert(S).values(
                    address=normal, domain=address_domain(normal), scope=scope, first_seen=at_now,
                    event_count=1, **labels,
                )
            )
        if outbox is not None and (row is None or (row.expires_at is not None and row.expires_at <= at_now)):
            outbox.enqueue(conn, [Change("added", normal, scope, source, reason, bounce_type, at_now, expires)])
        added = conn.execute(
            sa.select(*ENTRY_COLUMNS).where(S.c.address == normal).where(S.c.scope == scope)
        ).one()
        return entry(added)

    return db.write(work)


def remove(
    db: Database,
    policy: PolicySettings,
    address: str,
    *,
    scope: str,
    note: str,
    actor: str,
    allow_days: int | None,
    now: datetime | None,
    outbox: Outbox | None,
) -> Entry | None:
    """``Store.remove`` (which holds the defaults): unsuppress an address by hand; returns the
    entry that was active (None if none was), and announces its removal through ``outbox``.

    The removal is recorded as an event even when nothing was suppressed: events received
    before it never re-suppress the address, nor do bounces within the allow window
    (``allow_days``, default ``PolicySettings.allow_window_days``)."""
    check_text(scope=scope, note=note, actor=actor)
    normal = db.normalise(address)
    at_now = as_utc(now) or utcnow()
    days = policy.allow_window_days if allow_days is None else allow_days
    if days < 0:
        raise QueryError("allow_days must not be negative")
    allow_until = at_now + timedelta(days=days)

    def work(conn: Connection) -> Entry | None:
        db.lock(conn, [normal])
        row = conn.execute(
            sa.select(*ENTRY_COLUMNS).where(S.c.address == normal).where(S.c.scope == scope)
        ).first()
        removed = entry(row) if row is not None else None
        if removed is not None:
            conn.execute(sa.delete(S).where(S.c.id == removed.id))
        _change_event(
            conn, StoreKind.MANUAL_REMOVE, "remove", normal, scope=scope, now=at_now,
            reason=removed.reason if removed else "", bounce_type=removed.bounce_type if removed else "",
            expires_at=allow_until, explanation=note, actor=actor,
        )
        if outbox is not None and removed is not None and removed.active(at_now):
            outbox.enqueue(conn, [Change("removed", normal, scope, removed.source, removed.reason,
                                         removed.bounce_type, at_now)])
        return removed if removed is not None and removed.active(at_now) else None

    return db.write(work)


def purge_expired(db: Database, *, now: datetime | None, batch_size: int, outbox: Outbox | None) -> int:
    """``Store.purge_expired``: delete expired entries (recording an "expired" event for each, and
    announcing it through ``outbox``); returns how many."""
    at_now = as_utc(now) or utcnow()
    total = 0

    def work(conn: Connection) -> int:
        ids = sa.select(S.c.id).where(S.c.expires_at <= at_now).order_by(S.c.id).limit(batch_size)
        gone = conn.execute(
            sa.delete(S)
            .where(S.c.id.in_(ids.scalar_subquery()))
            .returning(S.c.address, S.c.scope, S.c.reason, S.c.bounce_type, S.c.expires_at, S.c.source)
        ).all()
        if outbox is not None:
            outbox.enqueue(conn, [Change("expired", r.address, r.scope, r.source, r.reason, r.bounce_type, at_now,
                                         r.expires_at) for r in gone])
        if gone:
            conn.execute(
                sa.insert(E),
                [
                    change_values(StoreKind.EXPIRED, "expire", row.address, scope=row.scope, now=at_now,
                                  reason=row.reason, bounce_type=row.bounce_type, expires_at=row.expires_at,
                                  explanation="expired", actor="purge")
                    for row in gone
                ],
            )
        return len(gone)

    while True:
        count = db.write(work)
        total += count
        if count < batch_size:
            break
    if total:
        log.info("store.purged", count=total)
    return total


def import_rows(
    db: Database,
    rows: Iterable[ImportRow | Rejected],
    *,
    actor: str,
    now: datetime | None,
    batch_size: int | None,
    on_rejected: Callable[[Rejected], None] | None,
    keep_rejected: int,
    outbox: Outbox | None,
) -> ImportReport:
    """``Store.import_rows`` (which holds the defaults): import rows in batches (one transaction
    each). New addresses and expired entries are (re)suppressed, each with an "import" event (and
    announced through ``outbox``, in the same transaction); active entries are left as they are
    (``already_suppressed``). Rows that are not valid are reported (``on_rejected`` sees each; the
    report keeps the first ``keep_rejected``) and nothing else is lost. Imported entries have no
    ``last_event_id``; their history shows the import event."""
    at_now = as_utc(now) or utcnow()
    size = batch_size or (IMPORT_BATCH_PG if db.pg else IMPORT_BATCH_SQLITE)
    report = ImportReport()
    batch: dict[tuple[str, str], _Pending] = {}
    normalise = db.normalise

    def reject(item: Rejected) -> None:
        report.rejected_count += 1
        if len(report.rejected) < keep_rejected:
            report.rejected.append(item)
        if on_rejected is not None:
            on_rejected(item)

    for item in rows:
        report.read += 1
        if isinstance(item, Rejected):
            reject(item)
            continue
        try:
            normal = normalise(item.address)
        except AddressError as exc:
            reject(Rejected(item.line, item.address, str(exc)))
            continue
        if item.source not in Source.ALL:
            reject(Rejected(item.line, item.source, f"unknown source {item.source!r}"))
            continue
        if any("\x00" in text for text in (item.reason, item.scope, item.bounce_type, item.note)):
            reject(Rejected(item.line, item.address, "a field contains a NUL character"))
            continue
        expires = as_utc(item.expires_at)
        if expires is not None and expires <= at_now:
            reject(Rejected(item.line, item.address, f"already expired ({expires.isoformat()})"))
            continue
        key = (normal, item.scope or GLOBAL_SCOPE)
        if key in batch:
            report.duplicates += 1
            continue
        batch[key] = _Pending(normal, key[1], item.source, item.reason, item.bounce_type,
                              as_utc(item.created) or at_now, expires, item.note,
                              as_utc(item.last_seen) or at_now, item.event_count)
        if len(batch) >= size:
            _import_batch(db, list(batch.values()), report, actor, at_now, outbox=outbox)
            batch.clear()
    if batch:
        _import_batch(db, list(batch.values()), report, actor, at_now, outbox=outbox)
    log.info("store.imported", read=report.read, added=report.added, rejected=report.rejected_count)
    return report


def _import_batch(db: Database, rows: list[_Pending], report: ImportReport, actor: str, now: datetime,
                  *, outbox: Outbox | None) -> None:
    """One batch on the driver's cursor: which addresses exist, then plain inserts (COPY on
    PostgreSQL) for new ones, updates for expired ones, and an import event for each."""
    ts = db.ts
    now_ts = ts(now)
    q = db.mark()

    def work(conn: Connection) -> int:
        db.lock(conn, (row.address for row in rows))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            names = [row.address for row in rows]
            if db.pg:
                cursor.execute("SELECT address, scope, expires_at FROM suppression WHERE address = ANY(%s)",
                               (names,))
            else:
                cursor.execute("SELECT address, scope, expires_at FROM suppression "
                               f"WHERE address IN ({db.mark(len(names))})", names)
            existing = {(a, sc): exp for a, sc, exp in cursor.fetchall()}
            fresh: list[tuple[Any, ...]] = []
            stale: list[tuple[Any, ...]] = []
            events: list[tuple[Any, ...]] = []
            template = list(_IMPORT_EVENT_TEMPLATE)
            template[_EV["actor"]] = actor
            template[_EV["received_at"]] = template[_EV["recorded_at"]] = now_ts
            announced: list[Change] = []
            for row in rows:
                key = (row.address, row.scope)
                expires = ts(row.expires_at) if row.expires_at is not None else None
                if key in existing:
                    old = existing[key]
                    if old is None or old > now_ts:
                        continue
                    stale.append((row.source, row.reason, row.bounce_type, ts(row.first_seen), ts(row.last_seen),
                                  expires, row.note, row.event_count, row.address, row.scope))
                else:
                    fresh.append((row.address, address_domain(row.address), row.scope, row.source, row.reason,
                                  row.bounce_type, ts(row.first_seen), ts(row.last_seen), expires, row.event_count,
                                  row.note))
                event = template.copy()
                event[_EV["address"]] = event[_EV["recipient"]] = row.address
                event[_EV["domain"]] = address_domain(row.address)
                event[_EV["scope"]] = row.scope
                event[_EV["reason"]] = row.reason
                event[_EV["bounce_type"]] = row.bounce_type
                event[_EV["expires_at"]] = expires
                event[_EV["explanation"]] = row.note
                events.append(tuple(event))
                announced.append(Change("added", row.address, row.scope, row.source, row.reason, row.bounce_type,
                                        now, row.expires_at))
            db.bulk_insert(cursor, "suppression", SUPPRESSION_INSERT_COLUMNS, fresh)
            if stale:
                cursor.executemany(
                    f"UPDATE suppression SET source = {q}, reason = {q}, bounce_type = {q}, first_seen = {q}, "
                    f"last_seen = {q}, expires_at = {q}, note = {q}, event_count = {q}, last_event_id = NULL "
                    f"WHERE address = {q} AND scope = {q}",
                    stale,
                )
            db.bulk_insert(cursor, "event", EVENT_INSERT_COLUMNS, events)
            if outbox is not None and outbox.enabled:
                outbox.enqueue_raw(cursor, announced, placeholder=q, ts=ts)
            return len(events)
        finally:
            cursor.close()

    added = db.write(work)
    report.added += added
    report.already_suppressed += len(rows) - added
