"""The web console's reads: each one an index probe or a read of the pre-aggregated daily counts
(``processor.store.daily``), never a scan of ``event``, so pages stay fast on a big list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from processor.store import daily, kept, passes, quarantine
from processor.store import models as m
from processor.store._db import ENTRY_COLUMNS, EVENT_COLUMNS, active, as_utc, utcnow
from processor.store.repo import Store
from processor.store.types import Entry, EventRecord

__all__ = [
    "MailboxSummary",
    "Overview",
    "QuarantinedMessage",
    "active_by_reason",
    "entries_of",
    "mailboxes",
    "overview",
    "quarantined",
    "undetermined_events",
]

_S = m.suppression
_E = m.event
_F = m.failed_message
_MS = m.mailbox_state


@dataclass(frozen=True, slots=True)
class Overview:
    days: list[str]
    per_day: daily.DayCounts
    top_hard_domains: list[tuple[str, int]]
    top_deferral_domains: list[tuple[str, int]]
    rates: list[daily.RateSeries]


TopDomains = Callable[[str], list[tuple[str, int]]]
"""category -> the top recipient domains over the window: how the caller computes (or caches) them."""


def overview(store: Store, days: int, top: TopDomains | None = None) -> Overview:
    """The overview's counts over the last ``days`` days, all from ``daily_count``/``sent_count``.
    The top domains sum a row per domain and day, the one part that grows with the list: the
    caller may serve them from a cache (``top``)."""
    window = daily.window(days)
    ranked = top or (lambda category: top_domains(store, category, days))
    with store.database.reading() as conn:
        per_day, rates = daily.day_counts(conn, window), daily.rate_series(conn, window)
    return Overview(window, per_day, ranked("hard"), ranked(daily.DEFERRAL), rates)


def top_domains(store: Store, category: str, days: int) -> list[tuple[str, int]]:
    """The recipient domains with the most ``category`` events over the last ``days`` days."""
    window = daily.window(days)
    with store.database.reading() as conn:
        return daily.top_keys(conn, daily.RCPT, category, window)


def top_rules(store: Store, days: int, limit: int = 15) -> list[tuple[str, str, int]]:
    """The rules that decided most report events over the last ``days`` days: (rule id, bounce type, count)."""
    window = daily.window(days)
    t = daily.daily_count.c
    total = sa.func.sum(t.n).label("total")
    query = (
        sa.select(t.key, t.category, total)
        .where(t.dimension == daily.RULE, t.category.in_(daily.VERDICT_CATEGORIES), t.day >= window[0],
               t.day <= window[-1])
        .group_by(t.key, t.category)
        .order_by(total.desc(), t.key)
        .limit(limit)
    )
    with store.database.reading() as conn:
        return [(str(key), str(category), int(n)) for key, category, n in conn.execute(query)]


def active_by_reason(store: Store, now: datetime | None = None) -> dict[str, int]:
    """Entries in force by reason (one pass over the suppression table: callers cache it)."""
    at_now = as_utc(now) or utcnow()
    query = sa.select(_S.c.reason, sa.func.count()).where(active(at_now)).group_by(_S.c.reason)
    with store.database.reading() as conn:
        counts = {str(reason or "-"): int(n) for reason, n in conn.execute(query)}
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def entries_of(store: Store, address: str) -> list[Entry]:
    """The address's entries in every scope, expired ones included (the caller shows which)."""
    normal = store.normalise(address)
    query = sa.select(*ENTRY_COLUMNS).where(_S.c.address == normal).order_by(_S.c.scope)
    with store.database.reading() as conn:
        return [Entry(*row) for row in conn.execute(query)]


def event_by_id(store: Store, event_id: int) -> EventRecord | None:
    with store.database.reading() as conn:
        row = conn.execute(sa.select(*EVENT_COLUMNS).where(_E.c.id == event_id)).first()
    return EventRecord(*row) if row is not None else None


def undetermined_events(store: Store, limit: int = 50) -> list[EventRecord]:
    """The newest report events that no rule decided (walks the id index backwards)."""
    query = (
        sa.select(*EVENT_COLUMNS)
        .where(_E.c.bounce_type == "undetermined")
        .order_by(_E.c.id.desc())
        .limit(limit)
    )
    with store.database.reading() as conn:
        return [EventRecord(*row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class MailboxSummary:
    mailbox: str
    uidvalidity: int | None
    last_uid: int | None
    last_pass: datetime | None
    errors_last_day: int
    quarantined_total: int
    """Messages in the quarantine now (not those processed again since)."""
    backlog: int | None = None
    """Messages still waiting when the last pass ended (None: not known)."""
    holder: str = ""
    """The daemon (host:pid) holding the mailbox's lease, as of its last pass."""
    last_error: str = ""
    last_error_at: datetime | None = None


def mailboxes(store: Store, now: datetime | None = None) -> list[MailboxSummary]:
    """Per mailbox: its position, its last pass (backlog, lease holder, failure), and its
    quarantined messages."""
    at_now = as_utc(now) or utcnow()
    since = at_now - timedelta(days=1)
    failures_day = (
        sa.select(_F.c.mailbox, sa.func.count()).where(_F.c.recorded_at >= since).group_by(_F.c.mailbox)
    )
    failures_all = (sa.select(_F.c.mailbox, sa.func.count()).where(_F.c.status != quarantine.REPROCESSED)
                    .group_by(_F.c.mailbox))
    with store.database.reading() as conn:
        states = {row.mailbox: row for row in conn.execute(sa.select(_MS))}
        recent = {str(k): int(n) for k, n in conn.execute(failures_day)}
        total = {str(k): int(n) for k, n in conn.execute(failures_all)}
        last = passes.read_passes(conn)
    names = sorted(set(states) | set(total) | set(last))
    result = []
    for name in names:
        state = states.get(name)
        seen = last.get(name)
        last_pass = seen.last_pass_at if seen is not None and seen.last_pass_at is not None else (
            as_utc(state.updated_at) if state is not None else None)
        result.append(MailboxSummary(
            name,
            state.uidvalidity if state is not None else None,
            state.last_uid if state is not None else None,
            last_pass,
            recent.get(name, 0),
            total.get(name, 0),
            seen.backlog if seen is not None else None,
            seen.holder if seen is not None else "",
            seen.last_error if seen is not None else "",
            seen.last_error_at if seen is not None else None,
        ))
    return result


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    id: int
    mailbox: str
    uidvalidity: int | None
    uid: int | None
    content_hash: str
    status: str
    error: str
    recorded_at: datetime
    kept_whole: bool = False
    """Kept whole: it can be processed again."""
    requested: quarantine.LastRequest | None = None
    """The newest request to process it again (who, why, when)."""


def _quarantine_query() -> sa.Select[Any]:
    whole = sa.and_(kept.kept_message.c.size.is_not(None),
                    sa.func.length(kept.kept_message.c.data) == kept.kept_message.c.size)
    return (sa.select(_F.c.id, _F.c.mailbox, _F.c.uidvalidity, _F.c.uid, _F.c.content_hash, _F.c.status,
                      _F.c.error, _F.c.recorded_at, sa.case((whole, True), else_=False))
            .select_from(_F.outerjoin(kept.kept_message, kept.kept_message.c.content_hash == _F.c.content_hash)))


def _quarantined_of(row: Any) -> QuarantinedMessage:
    return QuarantinedMessage(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]))


def quarantined(store: Store, limit: int = 100) -> list[QuarantinedMessage]:
    """The newest messages in the quarantine (asked to be processed again included), with their
    errors and the last request to process them again."""
    query = _quarantine_query().where(_F.c.status != quarantine.REPROCESSED).order_by(_F.c.id.desc()).limit(limit)
    with store.database.reading() as conn:
        rows = [_quarantined_of(row) for row in conn.execute(query)]
        asked = quarantine.last_requests(conn, [row.id for row in rows])
    return [replace(row, requested=asked.get(row.id)) for row in rows]


def record_sent(store: Store, reports: list[daily.SentReport]) -> int:
    """Store the senders' daily sent counts (see ``daily.record_sent``)."""
    now = utcnow().replace(tzinfo=None)
    return store.database.write(lambda conn: daily.record_sent(conn, reports, now, store.database.pg))


def report_of_event(store: Store, event_id: int) -> tuple[EventRecord, kept.KeptMessage | None] | None:
    """An event and the kept message its verdict came from (None where none was kept)."""
    with store.database.reading() as conn:
        row = conn.execute(sa.select(*EVENT_COLUMNS).where(_E.c.id == event_id)).first()
        if row is None:
            return None
        event = EventRecord(*row)
        if event.message_ref is None:
            return event, None
        content_hash = conn.execute(
            sa.select(m.processed_message.c.content_hash).where(m.processed_message.c.id == event.message_ref)
        ).scalar()
        return event, kept.read_kept(conn, content_hash) if content_hash else None


def quarantined_message(store: Store, failed_id: int) -> tuple[QuarantinedMessage, kept.KeptMessage | None] | None:
    """A quarantined message's record and the kept copy of it (None where none was kept)."""
    query = _quarantine_query().where(_F.c.id == failed_id)
    with store.database.reading() as conn:
        row = conn.execute(query).first()
        if row is None:
            return None
        failed = _quarantined_of(row)
        return failed, kept.read_kept(conn, failed.content_hash)
