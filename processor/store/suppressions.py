"""Reading the list: look-up, batch check, listing with a stable cursor, history and stats.

The hot look-ups (``is_suppressed``, ``check_many``) run raw SQL on the driver's cursor through
``Database.raw_read``; the rest are SQLAlchemy Core queries on a read connection.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from processor.addresses import AddressError
from processor.decide import GLOBAL_SCOPE
from processor.records import EventKind
from processor.store._db import (
    ENTRY_COLUMNS,
    EVENT_COLUMNS,
    RAW_SELECT,
    Database,
    E,
    S,
    active,
    as_utc,
    check_text,
    entry,
    raw_active,
    raw_entry,
    utcnow,
)
from processor.store.types import (
    REPORT_KINDS,
    BatchCheck,
    Entry,
    EntryFilter,
    EventRecord,
    Page,
    QueryError,
    Stats,
    StoreKind,
)

BATCH_CHECK_CHUNK = 10_000


MAX_ROW_ID = 2**63 - 1
"""The largest id a row can have (a signed 64-bit integer in every database)."""


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"s{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s") or not raw[1:].isascii() or not raw[1:].isdigit():
            raise ValueError(raw)
        last_id = int(raw[1:])
        if last_id > MAX_ROW_ID:
            raise ValueError(raw)
        return last_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise QueryError(f"invalid cursor {cursor[:40]!r}") from None


def count_active(db: Database, *, now: datetime | None = None) -> int:
    """How many suppression entries are in force (not expired) now."""
    at_now = as_utc(now) or utcnow()
    with db.reading() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(S).where(active(at_now))).scalar_one())


def is_suppressed(
    db: Database, address: str, scope: str = GLOBAL_SCOPE, *, now: datetime | None = None
) -> Entry | None:
    """The active entry for the address in ``scope`` (a global entry counts in every scope,
    and is preferred), or None. Expired entries never count. AddressError for a bad address."""
    check_text(scope=scope)
    normal = db.normalise(address)
    at_now = db.ts(as_utc(now) or utcnow())
    q = db.mark()
    if scope == GLOBAL_SCOPE:
        sql = f"{RAW_SELECT} WHERE address = {q} AND scope = 'global' AND {raw_active(q)}"
        rows = db.raw_read(sql, (normal, at_now))
    else:
        sql = f"{RAW_SELECT} WHERE address = {q} AND scope IN ('global', {q}) AND {raw_active(q)}"
        rows = db.raw_read(sql, (normal, scope, at_now))
    if not rows:
        return None
    rows.sort(key=lambda r: r[3] != GLOBAL_SCOPE)
    return raw_entry(rows[0])


def check_many(
    db: Database, addresses: Iterable[str], scope: str = GLOBAL_SCOPE, *, now: datetime | None = None
) -> BatchCheck:
    """Which of ``addresses`` are suppressed in ``scope`` (keyed by the addresses as given);
    invalid ones are reported, not raised. The caller bounds the batch size."""
    check_text(scope=scope)
    at_now = as_utc(now) or utcnow()
    wanted: dict[str, list[str]] = {}
    invalid: dict[str, str] = {}
    normalise = db.normalise
    for given in addresses:
        try:
            wanted.setdefault(normalise(given), []).append(given)
        except AddressError as exc:
            invalid[given] = str(exc)
    q = db.mark()
    stamp = db.ts(at_now)
    scoped = "scope = 'global'" if scope == GLOBAL_SCOPE else f"scope IN ('global', {q})"
    extra: tuple[Any, ...] = () if scope == GLOBAL_SCOPE else (scope,)
    found: dict[str, Entry] = {}
    names = sorted(wanted)  # index probes in key order touch each B-tree page once
    for start in range(0, len(names), BATCH_CHECK_CHUNK):
        chunk = names[start : start + BATCH_CHECK_CHUNK]
        if db.pg:
            # A LATERAL lookup per address: one index probe each (the planner would otherwise
            # choose a sequential scan for thousands of keys).
            sql = (f"SELECT s.* FROM unnest(%s::varchar[]) AS q(a) CROSS JOIN LATERAL ({RAW_SELECT} "
                   f"WHERE address = q.a AND {scoped} AND {raw_active(q)} LIMIT 2) AS s")
            rows = db.raw_read(sql, (chunk, *extra, stamp))
        else:
            sql = f"{RAW_SELECT} WHERE address IN ({db.mark(len(chunk))}) AND {scoped} AND {raw_active(q)}"
            rows = db.raw_read(sql, (*chunk, *extra, stamp))
        for row in rows:
            if row[1] not in found or row[3] == GLOBAL_SCOPE:
                found[row[1]] = raw_entry(row)
    suppressed = {given: hit for normal, hit in found.items() for given in wanted[normal]}
    return BatchCheck(suppressed, invalid)


def _filtered(query: Any, filters: EntryFilter, now: datetime) -> Any:
    check_text(reason=filters.reason, bounce_type=filters.bounce_type, source=filters.source,
               scope=filters.scope, domain=filters.domain)
    if not filters.include_expired:
        query = query.where(active(now))
    for name in ("reason", "bounce_type", "source", "scope"):
        value = getattr(filters, name)
        if value is not None:
            query = query.where(S.c[name] == value)
    if filters.domain is not None:
        domain = filters.domain.strip().lower()
        if not domain.isascii():
            import idna

            try:
                domain = idna.encode(domain).decode("ascii")
            except (idna.IDNAError, UnicodeError):
                raise QueryError(f"invalid domain {filters.domain!r}") from None
        query = query.where(S.c.domain == domain)
    if filters.since is not None:
        query = query.where(S.c.first_seen >= as_utc(filters.since))
    if filters.until is not None:
        query = query.where(S.c.first_seen < as_utc(filters.until))
    return query


def list_entries(
    db: Database,
    filters: EntryFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = 100,
    now: datetime | None = None,
) -> Page:
    """One page of entries in id order (stable: entries added later come after the cursor)."""
    if limit < 1:
        raise QueryError("limit must be at least 1")
    at_now = as_utc(now) or utcnow()
    query = _filtered(sa.select(*ENTRY_COLUMNS), filters or EntryFilter(), at_now)
    if cursor:
        query = query.where(S.c.id > _decode_cursor(cursor))
    query = query.order_by(S.c.id).limit(limit + 1)
    with db.reading() as conn:
        entries = [entry(row) for row in conn.execute(query)]
    more = len(entries) > limit
    entries = entries[:limit]
    return Page(entries, _encode_cursor(entries[-1].id) if more else None)


def iter_entries(
    db: Database, filters: EntryFilter | None = None, *, now: datetime | None = None, batch: int = 5000
) -> Iterator[Entry]:
    """Every matching entry, streamed in id order in batches (for export)."""
    at_now = as_utc(now) or utcnow()
    cursor: str | None = None
    while True:
        page = list_entries(db, filters, cursor=cursor, limit=batch, now=at_now)
        yield from page.entries
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def history(
    db: Database, address: str, *, scope: str | None = None, limit: int = 100, before_id: int | None = None
) -> list[EventRecord]:
    """The address's events, newest first (``before_id`` pages further back)."""
    check_text(scope=scope)
    normal = db.normalise(address)
    query = sa.select(*EVENT_COLUMNS).where(E.c.address == normal)
    if scope is not None:
        query = query.where(E.c.scope == scope)
    if before_id is not None:
        query = query.where(E.c.id < before_id)
    query = query.order_by(E.c.id.desc()).limit(limit)
    with db.reading() as conn:
        return [EventRecord(*row) for row in conn.execute(query)]


def events_to_review(db: Database, since: datetime, *, limit: int = 10_000) -> list[tuple[EventRecord, str]]:
    """Failures and delays since ``since`` that no rule decided, or whose address an operator
    later added or removed by hand, newest first, each with that later change's kind and reason
    ("manual_add:<reason>", "manual_remove", or ""): the input of ``rules suggest``."""
    later = E.alias("later")
    corrected = (
        sa.select(later.c.kind, later.c.reason)
        .where(later.c.address == E.c.address, later.c.id > E.c.id,
               later.c.kind.in_((StoreKind.MANUAL_ADD, StoreKind.MANUAL_REMOVE)))
        .order_by(later.c.id.desc())
        .limit(1)
    )
    kind_after = corrected.with_only_columns(later.c.kind).scalar_subquery()
    reason_after = corrected.with_only_columns(later.c.reason).scalar_subquery()
    query = (
        sa.select(*EVENT_COLUMNS, kind_after, reason_after)
        .where(E.c.received_at >= (as_utc(since) or utcnow()),
               E.c.kind.in_((str(EventKind.FAILURE), str(EventKind.DELAY))))
        .where(sa.or_(E.c.rule_id == "", kind_after.is_not(None)))
        .order_by(E.c.id.desc())
        .limit(limit)
    )
    width = len(EVENT_COLUMNS)
    with db.reading() as conn:
        rows = list(conn.execute(query))
    return [(EventRecord(*row[:width]), _correction(row[width], row[width + 1])) for row in rows]


def _correction(kind: str | None, reason: str | None) -> str:
    """An operator's later change to an address, as ``rules suggest`` shows it."""
    if kind is None:
        return ""
    return f"{kind}:{reason}" if kind == StoreKind.MANUAL_ADD and reason else kind


def stats(
    db: Database, since: datetime | None = None, until: datetime | None = None, *, top: int = 20
) -> Stats:
    """Counts of report events in [since, until) by bounce type, reason, domain, mailbox and
    decision (default: the last 7 days; the ``top`` largest groups for domain and reason), and
    of active entries by source and bounce type."""
    end = as_utc(until) or utcnow()
    try:
        start = as_utc(since) or end - timedelta(days=7)
    except OverflowError:
        raise QueryError("until is too early: give since as well") from None
    if start > end:
        raise QueryError("since is after until")
    window = sa.and_(E.c.received_at >= start, E.c.received_at < end, E.c.kind.in_(REPORT_KINDS))

    def grouped(conn: Connection, column: Any, limit: int | None = None) -> dict[str, int]:
        count = sa.func.count().label("n")
        query = sa.select(column, count).where(window).group_by(column).order_by(count.desc(), column)
        if limit is not None:
            query = query.limit(limit)
        return {str(key): int(n) for key, n in conn.execute(query)}

    def active_by(conn: Connection, column: Any) -> dict[str, int]:
        query = sa.select(column, sa.func.count()).where(active(end)).group_by(column)
        return {str(key): int(n) for key, n in conn.execute(query)}

    with db.reading() as conn:
        by_source = active_by(conn, S.c.source)
        return Stats(
            since=start,
            until=end,
            events_by_bounce_type=grouped(conn, E.c.bounce_type),
            events_by_reason=grouped(conn, E.c.reason, top),
            events_by_domain=grouped(conn, E.c.domain, top),
            events_by_mailbox=grouped(conn, E.c.mailbox),
            events_by_decision=grouped(conn, E.c.decision),
            active_by_source=by_source,
            active_by_bounce_type=active_by(conn, S.c.bounce_type),
            active_total=sum(by_source.values()),
        )
