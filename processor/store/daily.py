"""Pre-aggregated daily counts (for the console's charts) and the senders' daily sent counts.

The console must answer in milliseconds over millions of events, so it never scans ``event``:

- ``daily_count``: one row per (day, dimension, key, category) with a count, kept up to date in
  the SAME transaction as the events it counts (``DailyTally``, called by the recording path).
  Dimensions: ``rcpt`` (the recipient's domain), ``sender`` (the sending domain, from the
  original message's From) and ``rule`` (the rule that decided). Categories: the verdict's
  bounce type (hard, soft, complaint, auto_reply, delivered, undetermined), and ``deferral``
  for a delay report besides.
- ``sent_count``: messages sent per (day, sending domain), as the sender reports them through
  ``POST /v1/stats/sent``: the denominator of the complaint and hard-bounce rates.

Days are UTC calendar days stored as ``YYYY-MM-DD`` text (compared as text, the same on SQLite
and PostgreSQL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from processor.addresses import address_domain
from processor.records import BounceType, Decision, EventKind
from processor.store._sql import insert_rows

__all__ = [
    "CATEGORIES",
    "DEFERRAL",
    "DailyCount",
    "DailyTally",
    "SentCount",
    "day_of",
    "sender_domain",
]

DEFERRAL = "deferral"
CATEGORIES = ("hard", "soft", "complaint", "auto_reply")
"""The categories drawn per day on the overview."""
VERDICT_CATEGORIES = tuple(str(t) for t in BounceType)
"""Every category but DEFERRAL: each report event counts in exactly one of these."""
RCPT, SENDER, RULE = "rcpt", "sender", "rule"


class DailyCount(SQLModel, table=True):
    __tablename__: ClassVar[str] = "daily_count"

    dimension: str = Field(primary_key=True, max_length=8)
    category: str = Field(primary_key=True, max_length=16)
    day: str = Field(primary_key=True, max_length=10)
    key: str = Field(primary_key=True)
    n: int = Field(default=0, sa_type=sa.BigInteger)


class SentCount(SQLModel, table=True):
    __tablename__: ClassVar[str] = "sent_count"

    day: str = Field(primary_key=True, max_length=10)
    sender_domain: str = Field(primary_key=True)
    sent: int = Field(sa_type=sa.BigInteger)
    updated_at: datetime = Field(sa_type=sa.DateTime)


daily_count: sa.Table = DailyCount.__table__  # type: ignore[attr-defined]
sent_count: sa.Table = SentCount.__table__  # type: ignore[attr-defined]


def day_of(moment: datetime) -> str:
    """The UTC calendar day of a time, as stored."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d")


def sender_domain(from_addr: str) -> str:
    """The sending domain of an original message's From ("" when there is none)."""
    text = from_addr.strip()
    if "<" in text and ">" in text:
        text = text[text.rindex("<") + 1 : text.rindex(">")]
    if "@" not in text:
        return ""
    return text.rpartition("@")[2].strip().strip(">").lower()[:253]


_INSERT = "INSERT INTO daily_count (dimension, category, day, key, n)"
_TYPES = ("text", "text", "text", "text", "bigint")
_ON_CONFLICT = "ON CONFLICT (dimension, category, day, key) DO UPDATE SET n = daily_count.n + excluded.n"


class DailyTally:
    """The daily counts a batch of recorded events adds, written with one statement batch at the
    end of the recording transaction (so the counts commit, or roll back, with the events)."""

    __slots__ = ("_counts", "_days")

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str, str]] = Counter()
        self._days: dict[date, str] = {}
        """UTC date -> ``day_of`` (strftime is a microsecond an event; a batch spans a few days)."""

    def add(self, decision: Decision, received: datetime) -> None:
        """Count one recorded report event."""
        verdict = decision.verdict
        event = verdict.event
        rcpt = address_domain(decision.address) if decision.address else event.recipient_domain
        if received.tzinfo is UTC:
            day = self._days.get(received.date())
            if day is None:
                day = self._days[received.date()] = day_of(received)
        else:
            day = day_of(received)
        self._count(str(event.kind), day, rcpt, sender_domain(event.original.from_addr),
                    bounce_type=str(verdict.bounce_type), rule=verdict.rule_id, delta=1)

    def reclassified(self, rows: Sequence[Any], updates: Sequence[dict[str, Any]]) -> None:
        """Move the counts of re-classified events (``rows``: their stored ``event`` rows;
        ``updates``: reprocess's new values by ``event_id``) from their old verdict to the new."""
        by_id = {row.id: row for row in rows}
        for update in updates:
            row = by_id.get(update["event_id"])
            if row is None or (row.bounce_type, row.rule_id) == (update["bounce_type"], update["rule_id"]):
                continue
            received = row.received_at if isinstance(row.received_at, datetime) else datetime.fromisoformat(
                str(row.received_at))
            day, sender = day_of(received), sender_domain(row.original_from)
            self._count(row.kind, day, row.domain, sender, bounce_type=row.bounce_type, rule=row.rule_id, delta=-1)
            self._count(row.kind, day, row.domain, sender, bounce_type=update["bounce_type"], rule=update["rule_id"],
                        delta=1)

    def _count(self, kind: str, day: str, rcpt: str, sender: str, *, bounce_type: str, rule: str, delta: int) -> None:
        rule = rule[:200]
        if "\x00" in rcpt + sender + rule + bounce_type:  # as the event row stores them (PostgreSQL refuses NUL)
            rcpt, sender, rule, bounce_type = (t.replace("\x00", "\ufffd") for t in (rcpt, sender, rule, bounce_type))
        counts = self._counts
        for category in (bounce_type, DEFERRAL) if kind == EventKind.DELAY else (bounce_type,):
            counts[(RCPT, category, day, rcpt[:253])] += delta
            counts[(SENDER, category, day, sender)] += delta
            counts[(RULE, category, day, rule)] += delta

    def flush(self, cursor: Any, pg: bool) -> None:
        """Add the counts inside the caller's transaction (``cursor`` is its DB-API cursor)."""
        rows = sorted((*key, n) for key, n in self._counts.items() if n)  # one lock order for all writers
        insert_rows(cursor, pg, _INSERT, _TYPES, rows, tail=_ON_CONFLICT)  # the keys are distinct: one row each
        self._counts.clear()

    def flush_on(self, conn: sa.Connection, pg: bool) -> None:
        """``flush`` inside the caller's SQLAlchemy transaction."""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            self.flush(cursor, pg)
        finally:
            cursor.close()


# ----------------------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class DayCounts:
    """Report events per day and category over a window of days (oldest first)."""

    days: list[str]
    counts: dict[str, list[int]]
    """Category -> one count per day of ``days``."""


@dataclass(frozen=True, slots=True)
class RateSeries:
    """One sending domain's daily complaint and hard-bounce counts and its sent counts."""

    sender_domain: str
    days: list[str]
    complaints: list[int]
    hard: list[int]
    sent: list[int | None]
    """None where the sender reported no sent count for that day."""

    def complaint_rates(self) -> list[float | None]:
        return [_rate(c, s) for c, s in zip(self.complaints, self.sent, strict=True)]

    def hard_rates(self) -> list[float | None]:
        return [_rate(h, s) for h, s in zip(self.hard, self.sent, strict=True)]

    @property
    def has_sent_counts(self) -> bool:
        return any(s is not None for s in self.sent)


def _rate(count: int, sent: int | None) -> float | None:
    if not sent:
        return None
    return count / sent


def window(days: int, today: date | None = None) -> list[str]:
    """The last ``days`` UTC days up to today, oldest first."""
    end = today or datetime.now(UTC).date()
    return [(end - timedelta(days=offset)).isoformat() for offset in range(days - 1, -1, -1)]


def day_counts(conn: sa.Connection, days: Sequence[str], categories: Iterable[str] = CATEGORIES) -> DayCounts:
    """Report events per day and category (summed over sending domains)."""
    wanted = list(categories)
    index = {day: n for n, day in enumerate(days)}
    counts = {category: [0] * len(days) for category in wanted}
    t = daily_count.c
    query = (
        sa.select(t.category, t.day, sa.func.sum(t.n))
        .where(t.dimension == SENDER, t.category.in_(wanted), t.day >= days[0], t.day <= days[-1])
        .group_by(t.category, t.day)
    )
    for category, day, n in conn.execute(query):
        counts[category][index[day]] = int(n)
    return DayCounts(list(days), counts)


def top_keys(conn: sa.Connection, dimension: str, category: str, days: Sequence[str], limit: int = 10
             ) -> list[tuple[str, int]]:
    """The keys (domains, rule ids) with the most events of ``category`` over the days."""
    t = daily_count.c
    total = sa.func.sum(t.n).label("total")
    query = (
        sa.select(t.key, total)
        .where(t.dimension == dimension, t.category == category, t.day >= days[0], t.day <= days[-1])
        .group_by(t.key)
        .order_by(total.desc(), t.key)
        .limit(limit)
    )
    return [(str(key), int(n)) for key, n in conn.execute(query)]


def rate_series(conn: sa.Connection, days: Sequence[str], limit: int = 10) -> list[RateSeries]:
    """Per sending domain (those with reports or sent counts in the window, most sent first):
    complaints, hard bounces and sent counts per day."""
    index = {day: n for n, day in enumerate(days)}
    t = daily_count.c
    s = sent_count.c
    by_domain: dict[str, dict[str, list[Any]]] = {}

    def series(domain: str) -> dict[str, list[Any]]:
        found = by_domain.get(domain)
        if found is None:
            found = by_domain[domain] = {
                "complaint": [0] * len(days), "hard": [0] * len(days), "sent": [None] * len(days)}
        return found

    events = sa.select(t.key, t.category, t.day, t.n).where(
        t.dimension == SENDER, t.category.in_(("complaint", "hard")), t.day >= days[0], t.day <= days[-1])
    for key, category, day, n in conn.execute(events):
        series(key)[category][index[day]] += int(n)
    sent = sa.select(s.sender_domain, s.day, s.sent).where(s.day >= days[0], s.day <= days[-1])
    for key, day, n in conn.execute(sent):
        series(key)["sent"][index[day]] = int(n)

    def weight(item: tuple[str, dict[str, list[Any]]]) -> tuple[int, int, str]:
        values = item[1]
        return (-sum(v or 0 for v in values["sent"]), -sum(values["complaint"]) - sum(values["hard"]), item[0])

    ordered = sorted(by_domain.items(), key=weight)[:limit]
    return [RateSeries(domain, list(days), v["complaint"], v["hard"], v["sent"]) for domain, v in ordered]


@dataclass(frozen=True, slots=True)
class SentReport:
    """One day's sent count for one sending domain, as a sender reports it."""

    day: date
    sender_domain: str
    sent: int


def record_sent(conn: sa.Connection, reports: Sequence[SentReport], now: datetime, pg: bool) -> int:
    """Set the sent counts (a report for a day and domain replaces the earlier one, so a sender
    may report a running total during the day, and a retried request changes nothing)."""
    if not reports:
        return 0
    if pg:
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    rows = [{"day": r.day.isoformat(), "sender_domain": r.sender_domain, "sent": r.sent, "updated_at": now}
            for r in reports]
    statement = insert(sent_count)
    statement = statement.on_conflict_do_update(
        index_elements=["day", "sender_domain"],
        set_={"sent": statement.excluded.sent, "updated_at": statement.excluded.updated_at},
    )
    conn.execute(statement, rows)
    return len(rows)
