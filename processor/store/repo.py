"""The store's queries: everything the daemon, the API and the CLI do with the database.

Open it with ``processor.store.open_store(settings)``; one ``Store`` per process, thread-safe
(each call takes its own connection from the engine's pool, in its own transaction).

Writing (the daemon)::

    ref = MessageRef.for_bytes(data, mailbox="INBOX", uidvalidity=v, uid=u, received_at=internaldate)
    if store.seen(ref): ...                      # optional cheap skip before parsing
    result = store.record_message(ref, verdicts)  # ledger + events + suppressions, ONE transaction
    result.duplicate                              # True: seen before by (mailbox, uidvalidity, uid)
                                                  # or content hash; nothing was counted again
    result.decisions, result.event_ids            # one per verdict, for the log line
    store.record_messages([(ref, verdicts), ...]) # several messages, ONE transaction (one fsync)
    store.record_failed(ref, "cannot parse: ...")  # quarantined / failed message, with its error
    store.get_mailbox_state("INBOX") / store.set_mailbox_state("INBOX", uidvalidity, last_uid)

Reading (the API, senders)::

    store.is_suppressed(address, scope="global") -> Entry | None   # expired entries never count
    store.check_many(addresses, scope) -> BatchCheck                # up to 10,000 at once
    store.list_entries(EntryFilter(...), cursor=None, limit=100) -> Page   # stable cursor
    store.iter_entries(EntryFilter(...)) -> Iterator[Entry]                # streamed export
    store.history(address) -> list[EventRecord]                            # newest first
    store.stats(since, until) -> Stats

Changing the list by hand::

    store.add(address, reason=..., expires_at=..., note=..., actor=...) -> Entry
    store.remove(address, actor=..., allow_days=...) -> Entry | None   # recorded as an event
    store.import_rows(rows) -> ImportReport       # rows from processor.store.transfer.read_rows
    store.purge_expired() -> int                  # for the scheduled job

Every change to the list is an ``event`` row, so ``history`` explains any entry. Addresses are
normalised with ``processor.addresses`` (``AddressError`` for what cannot be an address); a bad
cursor, filter or argument is a ``QueryError``; ``store.ping()`` checks the database for /readyz.

Concurrency: on SQLite a write transaction begins with ``BEGIN IMMEDIATE`` (one writer at a time,
waiting up to the busy timeout); on PostgreSQL a writer takes a transaction-level advisory lock
per address (class ``ADDRESS_LOCK_CLASS``, keys in sorted order) before it reads the history it
decides from. Either way two processes recording events for the same address count exactly.
Failures reaching the database raise ``StoreError`` with the driver's reason (never the URL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from processor.addresses import AddressError, address_domain, normalise_address
from processor.config import Settings
from processor.policy import GLOBAL_SCOPE, ActiveEntry, History, Source, decide, outranks, scope_for
from processor.records import Action, Decision, EventKind, Verdict
from processor.store import models as m
from processor.store.engine import ADDRESS_LOCK_CLASS, IMMEDIATE, READONLY, StoreError

__all__ = [
    "BatchCheck",
    "Entry",
    "EntryFilter",
    "EventRecord",
    "ImportReport",
    "ImportRow",
    "MailboxPosition",
    "MessageRef",
    "Page",
    "QueryError",
    "RecordResult",
    "Rejected",
    "Stats",
    "Store",
    "StoreKind",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")

BATCH_CHECK_CHUNK = 10_000
LOCK_CHUNK = 1000


class StoreKind:
    """``event.kind`` values besides the ``EventKind`` of reports."""

    MANUAL_ADD = "manual_add"
    MANUAL_REMOVE = "manual_remove"
    IMPORT = "import"
    EXPIRED = "expired"
    REPROCESS = "reprocess"
    CHANGES = (MANUAL_ADD, MANUAL_REMOVE, IMPORT, EXPIRED, REPROCESS)


REPORT_KINDS = tuple(str(k) for k in EventKind)


class QueryError(ValueError):
    """A query the store cannot answer as asked (bad cursor, bad filter); the message says why."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class MessageRef:
    """The identity of one message: where it is and what it contains."""

    mailbox: str
    content_hash: str
    uidvalidity: int | None = None
    uid: int | None = None
    received_at: datetime | None = None
    """When the message arrived (IMAP INTERNALDATE); default: when it is recorded."""

    @classmethod
    def for_bytes(
        cls,
        data: bytes,
        mailbox: str,
        uidvalidity: int | None = None,
        uid: int | None = None,
        received_at: datetime | None = None,
    ) -> MessageRef:
        return cls(mailbox, hashlib.sha256(data).hexdigest(), uidvalidity, uid, received_at)


@dataclass(frozen=True, slots=True)
class Entry:
    """One suppression entry."""

    id: int
    address: str
    domain: str
    scope: str
    source: str
    reason: str
    bounce_type: str
    first_seen: datetime
    last_seen: datetime
    expires_at: datetime | None
    event_count: int
    last_event_id: int | None
    note: str

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One stored event: a classified report, or a change made to the list."""

    id: int
    message_ref: int | None
    kind: str
    address: str
    domain: str
    recipient: str
    scope: str
    mailbox: str
    uidvalidity: int | None
    uid: int | None
    original_message_id: str
    original_from: str
    dsn_action: str
    status: str
    reply_code: str
    smtp_command: str
    diagnostic: str
    diagnostic_type: str
    remote_mta: str
    reporting_mta: str
    mta: str
    feedback_type: str
    reason: str
    bounce_type: str
    rule_id: str
    decision: str
    counted: bool
    expires_at: datetime | None
    explanation: str
    actor: str
    received_at: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What ``record_message`` did."""

    duplicate: bool
    message_ref: int
    """The ledger row (the earlier one for a duplicate)."""
    decisions: tuple[Decision, ...] = ()
    event_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchCheck:
    """The result of ``check_many``, keyed by the addresses as given."""

    suppressed: dict[str, Entry]
    invalid: dict[str, str]
    """Address as given -> why it is not an address."""


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Filters for listing and exporting; ``since``/``until`` bound ``first_seen`` (until excluded)."""

    reason: str | None = None
    bounce_type: str | None = None
    source: str | None = None
    scope: str | None = None
    domain: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_expired: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[Entry]
    next_cursor: str | None
    """Give it back to get the next page; None on the last page."""


@dataclass(frozen=True, slots=True)
class Stats:
    since: datetime
    until: datetime
    events_by_bounce_type: dict[str, int]
    events_by_reason: dict[str, int]
    events_by_domain: dict[str, int]
    events_by_mailbox: dict[str, int]
    events_by_decision: dict[str, int]
    active_by_source: dict[str, int]
    active_by_bounce_type: dict[str, int]
    active_total: int


@dataclass(frozen=True, slots=True)
class MailboxPosition:
    mailbox: str
    uidvalidity: int
    last_uid: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One row to import (from ``processor.store.transfer.read_rows``)."""

    address: str
    line: int = 0
    reason: str = ""
    created: datetime | None = None
    scope: str = GLOBAL_SCOPE
    source: str = Source.IMPORT
    bounce_type: str = ""
    expires_at: datetime | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that was not imported: its line number, the offending value and why."""

    line: int
    value: str
    error: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


@dataclass(slots=True)
class ImportReport:
    read: int = 0
    added: int = 0
    already_suppressed: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    rejected_count: int = 0


# --------------------------------------------------------------------------- helpers


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Aware UTC (a naive datetime is taken to be UTC already)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _lock_key(address: str) -> int:
    key = zlib.crc32(address.encode("utf-8"))
    return key - (1 << 32) if key >= (1 << 31) else key


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"s{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise QueryError(f"invalid cursor {cursor[:40]!r}") from None


_S = m.suppression
_E = m.event
_ENTRY_COLUMNS = [_S.c[f] for f in Entry.__dataclass_fields__]
_EVENT_COLUMNS = [_E.c[f] for f in EventRecord.__dataclass_fields__]


def _entry(row: Any) -> Entry:
    return Entry(*row)


def _active(now_param: Any) -> sa.ColumnElement[bool]:
    return sa.or_(_S.c.expires_at.is_(None), _S.c.expires_at > now_param)


_LOOKUP_CHUNK = 500
_RAW_SELECT = f"SELECT {', '.join(Entry.__dataclass_fields__)} FROM suppression"


def _raw_active(mark: str) -> str:
    return f"(expires_at IS NULL OR expires_at > {mark})"


def _raw_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")
    result: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return result


def _raw_entry(row: Any) -> Entry:
    """An Entry from a driver row in _RAW_SELECT's column order."""
    return Entry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], _raw_time(row[7]),  # type: ignore[arg-type]
                 _raw_time(row[8]), _raw_time(row[9]), row[10], row[11], row[12])  # type: ignore[arg-type]


class Store:
    """The suppression store (see the module docstring)."""

    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        self.engine = engine
        self.settings = settings or Settings()
        self.policy = self.settings.policy
        self._lower = self.settings.database.lowercase_local_part
        self._sqlite = engine.dialect.name == "sqlite"
        self._pg = engine.dialect.name == "postgresql"
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    # ----------------------------------------------------------------- plumbing

    def normalise(self, address: str) -> str:
        """The canonical form of an address (AddressError if it is not one)."""
        return normalise_address(address, lowercase_local=self._lower)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Check that the database answers (for a readiness probe); StoreError if it does not."""
        self._raw_read("SELECT 1", ())

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reads: no transaction round trips (PostgreSQL autocommit; SQLite
        without BEGIN, each statement on its own snapshot)."""
        try:
            if self._pg:
                with self._autocommit.connect() as conn:
                    yield conn
            else:
                with self.engine.connect() as conn:
                    conn.execution_options(**{READONLY: True})
                    yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {_reason(exc)}") from None

    def _write(self, work: Callable[[Connection], T], attempts: int = 5) -> T:
        """Run ``work`` in one write transaction. PostgreSQL deadlocks and serialisation failures,
        and a connection found dead, are retried (the ledger makes a retried message a duplicate,
        never a double count); every other database failure is a StoreError."""
        driver_error = self.engine.dialect.loaded_dbapi.Error
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.connect() as conn:
                    if self._sqlite:
                        conn.execution_options(**{IMMEDIATE: True})
                    try:
                        with conn.begin():
                            return work(conn)
                    except driver_error as exc:
                        if self.engine.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None):
                            conn.invalidate()
                            raise _Retry(str(exc)) from exc
                        raise
            except (sa.exc.DBAPIError, driver_error, _Retry) as exc:
                orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
                code = getattr(orig, "sqlstate", None)
                invalidated = isinstance(exc, _Retry) or (
                    isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)
                first_line = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
                if (code in ("40P01", "40001") or invalidated) and attempt < attempts:
                    log.warning("store.retry", reason=first_line, attempt=attempt)
                    continue
                raise StoreError(f"database error: {first_line}") from None
        raise AssertionError("unreachable")

    def _insert(self, table: sa.Table) -> Any:
        if self._pg:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _lock(self, conn: Connection, addresses: Iterable[str]) -> None:
        """PostgreSQL: serialise writers per address (sorted keys: no deadlock between us)."""
        if not self._pg:
            return
        keys = sorted({_lock_key(a) for a in addresses if a})
        for start in range(0, len(keys), LOCK_CHUNK):
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:cls, k) FROM unnest(CAST(:keys AS integer[])) AS k"),
                {"cls": ADDRESS_LOCK_CLASS, "keys": keys[start : start + LOCK_CHUNK]},
            )

    # ----------------------------------------------------------------- messages

    def count_active(self, *, now: datetime | None = None) -> int:
        """How many suppression entries are in force (not expired) now."""
        at_now = as_utc(now) or utcnow()
        with self._reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_S).where(_active(at_now))).scalar_one())

    def recorded_uids(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        """Which of these UIDs the ledger holds for (mailbox, UIDVALIDITY): committed earlier."""
        pm = m.processed_message
        found: set[int] = set()
        with self._reading() as conn:
            for start in range(0, len(uids), _LOOKUP_CHUNK):
                chunk = list(uids[start : start + _LOOKUP_CHUNK])
                query = sa.select(pm.c.uid).where(
                    pm.c.mailbox == mailbox, pm.c.uidvalidity == uidvalidity, pm.c.uid.in_(chunk)
                )
                found.update(int(row[0]) for row in conn.execute(query))
        return found

    def recorded_hashes(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes the ledger holds."""
        return self._hashes_in(m.processed_message, hashes)

    def failed_hashes(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes were recorded as failed (quarantined) already."""
        return self._hashes_in(m.failed_message, hashes)

    def _hashes_in(self, table: sa.Table, hashes: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._reading() as conn:
            for start in range(0, len(hashes), _LOOKUP_CHUNK):
                chunk = list(hashes[start : start + _LOOKUP_CHUNK])
                found.update(row[0] for row in conn.execute(sa.select(table.c.content_hash).where(
                    table.c.content_hash.in_(chunk))))
        return found

    def seen(self, message: MessageRef) -> bool:
        """Whether the ledger has this message, by (mailbox, uidvalidity, uid) or content hash."""
        return self._ledger_id(message) is not None

    def _ledger_id(self, message: MessageRef, conn: Connection | None = None) -> int | None:
        pm = m.processed_message
        by_hash = pm.c.content_hash == message.content_hash
        if message.uid is not None:
            by_uid = sa.and_(
                pm.c.mailbox == message.mailbox,
                pm.c.uidvalidity == message.uidvalidity,
                pm.c.uid == message.uid,
            )
            condition = sa.or_(by_hash, by_uid)
        else:
            condition = by_hash
        query = sa.select(pm.c.id).where(condition).order_by(pm.c.id).limit(1)
        if conn is not None:
            return conn.execute(query).scalar()
        with self._reading() as reader:
            return reader.execute(query).scalar()

    def record_message(
        self,
        message: MessageRef,
        verdicts: Sequence[Verdict],
        *,
        now: datetime | None = None,
        advance_mailbox: bool = True,
    ) -> RecordResult:
        """Record one message in ONE transaction: the ledger row, an event per verdict (with the
        policy's decision) and the suppression changes. A message seen before by either key is a
        duplicate: nothing is written and ``duplicate`` is True. With ``advance_mailbox`` the
        mailbox's last UID moves forward to this UID (when its UIDVALIDITY matches)."""
        return self.record_messages([(message, verdicts)], now=now, advance_mailbox=advance_mailbox)[0]

    def record_messages(
        self,
        messages: Sequence[tuple[MessageRef, Sequence[Verdict]]],
        *,
        now: datetime | None = None,
        advance_mailbox: bool = True,
    ) -> list[RecordResult]:
        """``record_message`` for several messages in ONE transaction (all or none are committed):
        one commit, one fsync, for a batch. A duplicate (also within the batch) counts nothing."""
        at_now = as_utc(now) or utcnow()
        prepared: list[tuple[MessageRef, list[tuple[Verdict, str, str]]]] = []
        for message, verdicts in messages:
            normalised: list[tuple[Verdict, str, str]] = []
            for verdict in verdicts:
                try:
                    normalised.append((verdict, self.normalise(verdict.event.recipient), ""))
                except AddressError as exc:
                    normalised.append((verdict, "", str(exc)))
            prepared.append((message, normalised))
        q = self._mark()

        def work(conn: Connection) -> list[RecordResult | None]:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                self._lock(conn, (a for _, items in prepared for _, a, _ in items))
                results: list[RecordResult | None] = []
                for message, items in prepared:
                    received = as_utc(message.received_at) or at_now
                    cursor.execute(
                        "INSERT INTO processed_message (mailbox, uidvalidity, uid, content_hash, received_at, "
                        f"recorded_at, event_count) VALUES ({self._mark(7)}) ON CONFLICT DO NOTHING RETURNING id",
                        (message.mailbox, message.uidvalidity, message.uid, message.content_hash,
                         self._ts(message.received_at) if message.received_at else None, self._ts(at_now),
                         len(items)),
                    )
                    inserted = cursor.fetchone()
                    if inserted is None:
                        results.append(None)
                        continue
                    context = _Context(message, inserted[0], received, at_now)
                    decisions: list[Decision] = []
                    event_ids: list[int] = []
                    for verdict, address, error in items:
                        decision, event_id = self._record_verdict(cursor, verdict, address, error, context)
                        decisions.append(decision)
                        event_ids.append(event_id)
                    if advance_mailbox and message.uid is not None and message.uidvalidity is not None:
                        cursor.execute(
                            f"UPDATE mailbox_state SET last_uid = {q}, updated_at = {q} "
                            f"WHERE mailbox = {q} AND uidvalidity = {q} AND last_uid < {q}",
                            (message.uid, self._ts(at_now), message.mailbox, message.uidvalidity, message.uid),
                        )
                    results.append(RecordResult(False, inserted[0], tuple(decisions), tuple(event_ids)))
                return results
            finally:
                cursor.close()

        written = self._write(work)
        final: list[RecordResult] = []
        for (message, _), result in zip(prepared, written, strict=True):
            if result is not None:
                final.append(result)
                continue
            earlier = self._ledger_id(message)
            log.info("store.duplicate", mailbox=message.mailbox, uid=message.uid, ledger=earlier)
            final.append(RecordResult(True, earlier or 0))
        return final

    def _record_verdict(
        self, cursor: Any, verdict: Verdict, address: str, error: str, context: _Context
    ) -> tuple[Decision, int]:
        received, now = context.received, context.now
        scope = scope_for(verdict, self.policy)
        if not address:
            why = error or "the report names no recipient"
            decision = Decision(verdict, "", Action.IGNORE, scope, explanation=why)
            return decision, self._insert_event(cursor, decision, context)
        history, row = self._history(cursor, address, scope, received, now)
        decision = decide(verdict, history, self.policy, now, received_at=received)
        event_id = self._insert_event(cursor, decision, context)
        if decision.action is Action.SUPPRESS:
            self._suppress(cursor, decision, row, event_id, now)
        return decision, event_id

    def _history(
        self, cursor: Any, address: str, scope: str, at: datetime, now: datetime
    ) -> tuple[History, Entry | None]:
        """The address's entry in the scope (even if expired) and the policy's view of its history."""
        q = self._mark()
        cursor.execute(f"{_RAW_SELECT} WHERE address = {q} AND scope = {q}", (address, scope))
        found = cursor.fetchone()
        row = _raw_entry(found) if found is not None else None
        entry = None
        if row is not None and row.active(now):
            entry = ActiveEntry(row.source, row.reason, row.bounce_type, row.expires_at)
        window = timedelta(days=self.policy.soft_window_days)
        cursor.execute(
            f"SELECT kind, received_at, expires_at FROM event WHERE address = {q} AND scope = {q} AND "
            f"((counted = {q} AND received_at > {q} AND received_at < {q}) OR kind = '{StoreKind.MANUAL_REMOVE}')",
            (address, scope, True, self._ts(at - window), self._ts(at + window)),
        )
        soft: list[datetime] = []
        removed_at: datetime | None = None
        allow_until: datetime | None = None
        for kind, received_at, expires_at in cursor.fetchall():
            when = _raw_time(received_at)
            assert when is not None
            if kind == StoreKind.MANUAL_REMOVE:
                if removed_at is None or when > removed_at:
                    removed_at, allow_until = when, _raw_time(expires_at)
            else:
                soft.append(when)
        history = History(address, scope, entry, tuple(soft), removed_at, allow_until)
        return history, row

    def _insert_event(self, cursor: Any, decision: Decision, context: _Context) -> int:
        message = context.message
        verdict = decision.verdict
        event = verdict.event
        ts = self._ts
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
        cursor.execute(_INSERT_EVENT_SQL[self._pg], tuple(_clean(values[name]) for name in _EVENT_INSERT_COLUMNS))
        event_id: int = cursor.fetchone()[0]
        return event_id

    def _suppress(self, cursor: Any, decision: Decision, row: Entry | None, event_id: int, now: datetime) -> None:
        verdict = decision.verdict
        q = self._mark()
        ts = self._ts
        source, reason, bounce_type = decision.source or Source.BOUNCE, _clean(verdict.reason), str(verdict.bounce_type)
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
            f"INSERT INTO suppression ({', '.join(_IMPORT_COLUMNS)}, last_event_id) "
            f"VALUES ({self._mark(len(_IMPORT_COLUMNS) + 1)})",
            (decision.address, address_domain(decision.address), decision.scope, source, reason, bounce_type,
             ts(now), ts(now), expires, 1, "", event_id),
        )

    def record_failed(
        self, message: MessageRef, error: str, *, status: str = "quarantined", now: datetime | None = None
    ) -> int:
        """Record a message that was quarantined or failed, with its error. Not a ledger entry: the
        same message is processed normally once the problem is fixed."""
        at_now = as_utc(now) or utcnow()

        def work(conn: Connection) -> int:
            new_id: int = conn.execute(
                sa.insert(m.failed_message)
                .values(
                    mailbox=message.mailbox,
                    uidvalidity=message.uidvalidity,
                    uid=message.uid,
                    content_hash=message.content_hash,
                    status=status,
                    error=error,
                    recorded_at=at_now,
                )
                .returning(m.failed_message.c.id)
            ).scalar_one()
            return new_id

        return self._write(work)

    # ----------------------------------------------------------------- mailbox state

    def get_mailbox_state(self, mailbox: str) -> MailboxPosition | None:
        ms = m.mailbox_state
        with self._reading() as conn:
            row = conn.execute(
                sa.select(ms.c.mailbox, ms.c.uidvalidity, ms.c.last_uid, ms.c.updated_at).where(
                    ms.c.mailbox == mailbox
                )
            ).first()
        return MailboxPosition(*row) if row is not None else None

    def set_mailbox_state(self, mailbox: str, uidvalidity: int, last_uid: int, *, now: datetime | None = None) -> None:
        """Set a mailbox's UIDVALIDITY and last UID (a new UIDVALIDITY resets the position)."""
        at_now = as_utc(now) or utcnow()
        values = {"uidvalidity": uidvalidity, "last_uid": last_uid, "updated_at": at_now}

        def work(conn: Connection) -> None:
            conn.execute(
                self._insert(m.mailbox_state)
                .values(mailbox=mailbox, **values)
                .on_conflict_do_update(index_elements=["mailbox"], set_=values)
            )

        self._write(work)

    # ----------------------------------------------------------------- reads

    def _raw_read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """One query on the driver's own cursor, outside any transaction (the hot read path:
        no statement compilation, no BEGIN/ROLLBACK round trips). A connection found dead (the
        server restarted) is dropped and the query retried once on a fresh one."""
        for attempt in (1, 2):
            try:
                fairy = self.engine.raw_connection()
            except sa.exc.DBAPIError as exc:
                raise StoreError(f"database error: {_reason(exc)}") from None
            except self.engine.dialect.loaded_dbapi.Error as exc:
                raise StoreError(f"database error: {str(exc).strip().splitlines()[0]}") from None
            try:
                if self._pg:
                    fairy.driver_connection.autocommit = True  # type: ignore[union-attr]
                cursor = fairy.cursor()
                try:
                    cursor.execute(sql, params)
                    rows: list[Any] = list(cursor.fetchall())
                finally:
                    cursor.close()
                if self._pg:
                    fairy.driver_connection.autocommit = False  # type: ignore[union-attr]
                return rows
            except self.engine.dialect.loaded_dbapi.Error as exc:
                if attempt == 1 and self.engine.dialect.is_disconnect(exc, fairy.dbapi_connection, None):
                    fairy.invalidate()
                    continue
                raise StoreError(f"database error: {str(exc).strip().splitlines()[0]}") from None
            finally:
                fairy.close()
        raise AssertionError("unreachable")

    def _ts(self, value: datetime) -> Any:
        """A time as the driver stores it: naive UTC (PostgreSQL), SQLAlchemy's text form (SQLite)."""
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not UTC else value.replace(tzinfo=None)
        return naive if self._pg else naive.isoformat(" ", "microseconds")

    def _mark(self, count: int = 1) -> str:
        return ", ".join(["%s" if self._pg else "?"] * count)

    def is_suppressed(self, address: str, scope: str = GLOBAL_SCOPE, *, now: datetime | None = None) -> Entry | None:
        """The active entry for the address in ``scope`` (a global entry counts in every scope,
        and is preferred), or None. Expired entries never count. AddressError for a bad address."""
        _check_text(scope=scope)
        normal = self.normalise(address)
        at_now = self._ts(as_utc(now) or utcnow())
        q = self._mark()
        if scope == GLOBAL_SCOPE:
            sql = f"{_RAW_SELECT} WHERE address = {q} AND scope = 'global' AND {_raw_active(q)}"
            rows = self._raw_read(sql, (normal, at_now))
        else:
            sql = f"{_RAW_SELECT} WHERE address = {q} AND scope IN ('global', {q}) AND {_raw_active(q)}"
            rows = self._raw_read(sql, (normal, scope, at_now))
        if not rows:
            return None
        rows.sort(key=lambda r: r[3] != GLOBAL_SCOPE)
        return _raw_entry(rows[0])

    def check_many(
        self, addresses: Iterable[str], scope: str = GLOBAL_SCOPE, *, now: datetime | None = None
    ) -> BatchCheck:
        """Which of ``addresses`` are suppressed in ``scope`` (keyed by the addresses as given);
        invalid ones are reported, not raised. The caller bounds the batch size."""
        _check_text(scope=scope)
        at_now = as_utc(now) or utcnow()
        wanted: dict[str, list[str]] = {}
        invalid: dict[str, str] = {}
        normalise = self.normalise
        for given in addresses:
            try:
                wanted.setdefault(normalise(given), []).append(given)
            except AddressError as exc:
                invalid[given] = str(exc)
        q = self._mark()
        stamp = self._ts(at_now)
        scoped = "scope = 'global'" if scope == GLOBAL_SCOPE else f"scope IN ('global', {q})"
        extra: tuple[Any, ...] = () if scope == GLOBAL_SCOPE else (scope,)
        found: dict[str, Entry] = {}
        names = sorted(wanted)  # index probes in key order touch each B-tree page once
        for start in range(0, len(names), BATCH_CHECK_CHUNK):
            chunk = names[start : start + BATCH_CHECK_CHUNK]
            if self._pg:
                # A LATERAL lookup per address: one index probe each (the planner would otherwise
                # choose a sequential scan for thousands of keys).
                sql = (f"SELECT s.* FROM unnest(%s::varchar[]) AS q(a) CROSS JOIN LATERAL ({_RAW_SELECT} "
                       f"WHERE address = q.a AND {scoped} AND {_raw_active(q)} LIMIT 2) AS s")
                rows = self._raw_read(sql, (chunk, *extra, stamp))
            else:
                sql = f"{_RAW_SELECT} WHERE address IN ({self._mark(len(chunk))}) AND {scoped} AND {_raw_active(q)}"
                rows = self._raw_read(sql, (*chunk, *extra, stamp))
            for row in rows:
                if row[1] not in found or row[3] == GLOBAL_SCOPE:
                    found[row[1]] = _raw_entry(row)
        suppressed = {given: entry for normal, entry in found.items() for given in wanted[normal]}
        return BatchCheck(suppressed, invalid)

    def _filtered(self, query: Any, filters: EntryFilter, now: datetime) -> Any:
        _check_text(reason=filters.reason, bounce_type=filters.bounce_type, source=filters.source,
                    scope=filters.scope, domain=filters.domain)
        if not filters.include_expired:
            query = query.where(_active(now))
        for name in ("reason", "bounce_type", "source", "scope"):
            value = getattr(filters, name)
            if value is not None:
                query = query.where(_S.c[name] == value)
        if filters.domain is not None:
            domain = filters.domain.strip().lower()
            if not domain.isascii():
                import idna

                try:
                    domain = idna.encode(domain).decode("ascii")
                except (idna.IDNAError, UnicodeError):
                    raise QueryError(f"invalid domain {filters.domain!r}") from None
            query = query.where(_S.c.domain == domain)
        if filters.since is not None:
            query = query.where(_S.c.first_seen >= as_utc(filters.since))
        if filters.until is not None:
            query = query.where(_S.c.first_seen < as_utc(filters.until))
        return query

    def list_entries(
        self,
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
        query = self._filtered(sa.select(*_ENTRY_COLUMNS), filters or EntryFilter(), at_now)
        if cursor:
            query = query.where(_S.c.id > _decode_cursor(cursor))
        query = query.order_by(_S.c.id).limit(limit + 1)
        with self._reading() as conn:
            entries = [_entry(row) for row in conn.execute(query)]
        more = len(entries) > limit
        entries = entries[:limit]
        return Page(entries, _encode_cursor(entries[-1].id) if more else None)

    def iter_entries(
        self, filters: EntryFilter | None = None, *, now: datetime | None = None, batch: int = 5000
    ) -> Iterator[Entry]:
        """Every matching entry, streamed in id order in batches (for export)."""
        at_now = as_utc(now) or utcnow()
        cursor: str | None = None
        while True:
            page = self.list_entries(filters, cursor=cursor, limit=batch, now=at_now)
            yield from page.entries
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def history(
        self, address: str, *, scope: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[EventRecord]:
        """The address's events, newest first (``before_id`` pages further back)."""
        _check_text(scope=scope)
        normal = self.normalise(address)
        query = sa.select(*_EVENT_COLUMNS).where(_E.c.address == normal)
        if scope is not None:
            query = query.where(_E.c.scope == scope)
        if before_id is not None:
            query = query.where(_E.c.id < before_id)
        query = query.order_by(_E.c.id.desc()).limit(limit)
        with self._reading() as conn:
            return [EventRecord(*row) for row in conn.execute(query)]

    def stats(
        self, since: datetime | None = None, until: datetime | None = None, *, top: int = 20
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
        window = sa.and_(_E.c.received_at >= start, _E.c.received_at < end, _E.c.kind.in_(REPORT_KINDS))

        def grouped(conn: Connection, column: Any, limit: int | None = None) -> dict[str, int]:
            count = sa.func.count().label("n")
            query = sa.select(column, count).where(window).group_by(column).order_by(count.desc(), column)
            if limit is not None:
                query = query.limit(limit)
            return {str(key): int(n) for key, n in conn.execute(query)}

        def active(conn: Connection, column: Any) -> dict[str, int]:
            query = sa.select(column, sa.func.count()).where(_active(end)).group_by(column)
            return {str(key): int(n) for key, n in conn.execute(query)}

        with self._reading() as conn:
            by_source = active(conn, _S.c.source)
            return Stats(
                since=start,
                until=end,
                events_by_bounce_type=grouped(conn, _E.c.bounce_type),
                events_by_reason=grouped(conn, _E.c.reason, top),
                events_by_domain=grouped(conn, _E.c.domain, top),
                events_by_mailbox=grouped(conn, _E.c.mailbox),
                events_by_decision=grouped(conn, _E.c.decision),
                active_by_source=by_source,
                active_by_bounce_type=active(conn, _S.c.bounce_type),
                active_total=sum(by_source.values()),
            )

    # ----------------------------------------------------------------- manual changes

    def _change_event(
        self,
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
            sa.insert(_E)
            .values(**_change_values(kind, decision, address, scope=scope, now=now, reason=reason,
                                     bounce_type=bounce_type, expires_at=expires_at, explanation=explanation,
                                     actor=actor))
            .returning(_E.c.id)
        ).scalar_one()
        return event_id

    def add(
        self,
        address: str,
        *,
        reason: str = "manual",
        scope: str = GLOBAL_SCOPE,
        expires_at: datetime | None = None,
        note: str = "",
        actor: str = "",
        source: str = Source.MANUAL,
        bounce_type: str = "",
        now: datetime | None = None,
    ) -> Entry:
        """Suppress an address by hand (replacing the reason, expiry and note of an active entry)."""
        _check_text(reason=reason, scope=scope, note=note, actor=actor, bounce_type=bounce_type)
        normal = self.normalise(address)
        if source not in Source.ALL:
            raise QueryError(f"unknown source {source!r} (expected one of: {', '.join(Source.ALL)})")
        at_now = as_utc(now) or utcnow()
        expires = as_utc(expires_at)
        if expires is not None and expires <= at_now:
            raise QueryError(f"expiry {expires.isoformat()} is not in the future")

        def work(conn: Connection) -> Entry:
            self._lock(conn, [normal])
            event_id = self._change_event(
                conn, StoreKind.MANUAL_ADD, "add", normal, scope=scope, now=at_now, reason=reason,
                bounce_type=bounce_type, expires_at=expires, explanation=note, actor=actor,
            )
            labels = {"source": source, "reason": reason, "bounce_type": bounce_type, "expires_at": expires,
                      "note": note, "last_seen": at_now, "last_event_id": event_id}
            row = conn.execute(
                sa.select(_S.c.id, _S.c.expires_at, _S.c.event_count)
                .where(_S.c.address == normal)
                .where(_S.c.scope == scope)
            ).first()
            if row is not None:
                if row.expires_at is None or row.expires_at > at_now:
                    values = {**labels, "event_count": row.event_count + 1}
                else:
                    values = {**labels, "event_count": 1, "first_seen": at_now}
                conn.execute(sa.update(_S).where(_S.c.id == row.id).values(**values))
            else:
                conn.execute(
                    sa.insert(_S).values(
                        address=normal, domain=address_domain(normal), scope=scope, first_seen=at_now,
                        event_count=1, **labels,
                    )
                )
            entry = conn.execute(
                sa.select(*_ENTRY_COLUMNS).where(_S.c.address == normal).where(_S.c.scope == scope)
            ).one()
            return _entry(entry)

        return self._write(work)

    def remove(
        self,
        address: str,
        *,
        scope: str = GLOBAL_SCOPE,
        note: str = "",
        actor: str = "",
        allow_days: int | None = None,
        now: datetime | None = None,
    ) -> Entry | None:
        """Unsuppress an address by hand; returns the entry that was active (None if none was).

        The removal is recorded as an event even when nothing was suppressed: events received
        before it never re-suppress the address, nor do bounces within the allow window
        (``allow_days``, default ``PolicySettings.allow_window_days``)."""
        _check_text(scope=scope, note=note, actor=actor)
        normal = self.normalise(address)
        at_now = as_utc(now) or utcnow()
        days = self.policy.allow_window_days if allow_days is None else allow_days
        if days < 0:
            raise QueryError("allow_days must not be negative")
        allow_until = at_now + timedelta(days=days)

        def work(conn: Connection) -> Entry | None:
            self._lock(conn, [normal])
            row = conn.execute(
                sa.select(*_ENTRY_COLUMNS).where(_S.c.address == normal).where(_S.c.scope == scope)
            ).first()
            removed = _entry(row) if row is not None else None
            if removed is not None:
                conn.execute(sa.delete(_S).where(_S.c.id == removed.id))
            self._change_event(
                conn, StoreKind.MANUAL_REMOVE, "remove", normal, scope=scope, now=at_now,
                reason=removed.reason if removed else "", bounce_type=removed.bounce_type if removed else "",
                expires_at=allow_until, explanation=note, actor=actor,
            )
            return removed if removed is not None and removed.active(at_now) else None

        return self._write(work)

    def purge_expired(self, *, now: datetime | None = None, batch_size: int = 1000) -> int:
        """Delete expired entries (recording an "expired" event for each); returns how many."""
        at_now = as_utc(now) or utcnow()
        total = 0

        def work(conn: Connection) -> int:
            ids = sa.select(_S.c.id).where(_S.c.expires_at <= at_now).order_by(_S.c.id).limit(batch_size)
            gone = conn.execute(
                sa.delete(_S)
                .where(_S.c.id.in_(ids.scalar_subquery()))
                .returning(_S.c.address, _S.c.scope, _S.c.reason, _S.c.bounce_type, _S.c.expires_at)
            ).all()
            if gone:
                conn.execute(
                    sa.insert(_E),
                    [
                        _change_values(StoreKind.EXPIRED, "expire", row.address, scope=row.scope, now=at_now,
                                       reason=row.reason, bounce_type=row.bounce_type, expires_at=row.expires_at,
                                       explanation="expired", actor="purge")
                        for row in gone
                    ],
                )
            return len(gone)

        while True:
            count = self._write(work)
            total += count
            if count < batch_size:
                break
        if total:
            log.info("store.purged", count=total)
        return total

    # ----------------------------------------------------------------- import

    def import_rows(
        self,
        rows: Iterable[ImportRow | Rejected],
        *,
        actor: str = "import",
        now: datetime | None = None,
        batch_size: int | None = None,
        on_rejected: Callable[[Rejected], None] | None = None,
        keep_rejected: int = 1000,
    ) -> ImportReport:
        """Import rows in batches (one transaction each). New addresses and expired entries are
        (re)suppressed, each with an "import" event; active entries are left as they are
        (``already_suppressed``). Rows that are not valid are reported (``on_rejected`` sees each;
        the report keeps the first ``keep_rejected``) and nothing else is lost. Imported entries
        have no ``last_event_id``; their history shows the import event."""
        at_now = as_utc(now) or utcnow()
        size = batch_size or (IMPORT_BATCH_PG if self._pg else IMPORT_BATCH_SQLITE)
        report = ImportReport()
        batch: dict[tuple[str, str], _Pending] = {}
        normalise = self.normalise

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
                                  as_utc(item.created) or at_now, expires, item.note)
            if len(batch) >= size:
                self._import_batch(list(batch.values()), report, actor, at_now)
                batch.clear()
        if batch:
            self._import_batch(list(batch.values()), report, actor, at_now)
        log.info("store.imported", read=report.read, added=report.added, rejected=report.rejected_count)
        return report

    def _bulk_insert(self, cursor: Any, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert many rows on the driver's cursor: COPY on PostgreSQL, executemany on SQLite."""
        names = ", ".join(columns)
        if self._pg:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for values in rows:
                    copy.write_row(values)
        else:
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({self._mark(len(columns))})", rows)

    def _import_batch(self, rows: list[_Pending], report: ImportReport, actor: str, now: datetime) -> None:
        """One batch on the driver's cursor: which addresses exist, then plain inserts (COPY on
        PostgreSQL) for new ones, updates for expired ones, and an import event for each."""
        ts = self._ts
        now_ts = ts(now)
        q = self._mark()

        def work(conn: Connection) -> int:
            self._lock(conn, (row.address for row in rows))
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                names = [row.address for row in rows]
                if self._pg:
                    cursor.execute("SELECT address, scope, expires_at FROM suppression WHERE address = ANY(%s)",
                                   (names,))
                else:
                    cursor.execute("SELECT address, scope, expires_at FROM suppression "
                                   f"WHERE address IN ({self._mark(len(names))})", names)
                existing = {(a, sc): exp for a, sc, exp in cursor.fetchall()}
                fresh: list[tuple[Any, ...]] = []
                stale: list[tuple[Any, ...]] = []
                events: list[tuple[Any, ...]] = []
                template = list(_IMPORT_EVENT_TEMPLATE)
                template[_EV["actor"]] = actor
                template[_EV["received_at"]] = template[_EV["recorded_at"]] = now_ts
                for row in rows:
                    key = (row.address, row.scope)
                    expires = ts(row.expires_at) if row.expires_at is not None else None
                    if key in existing:
                        old = existing[key]
                        if old is None or old > now_ts:
                            continue
                        stale.append((row.source, row.reason, row.bounce_type, ts(row.first_seen), now_ts, expires,
                                      row.note, row.address, row.scope))
                    else:
                        fresh.append((row.address, address_domain(row.address), row.scope, row.source, row.reason,
                                      row.bounce_type, ts(row.first_seen), now_ts, expires, 1, row.note))
                    event = template.copy()
                    event[_EV["address"]] = event[_EV["recipient"]] = row.address
                    event[_EV["domain"]] = address_domain(row.address)
                    event[_EV["scope"]] = row.scope
                    event[_EV["reason"]] = row.reason
                    event[_EV["bounce_type"]] = row.bounce_type
                    event[_EV["expires_at"]] = expires
                    event[_EV["explanation"]] = row.note
                    events.append(tuple(event))
                self._bulk_insert(cursor, "suppression", _IMPORT_COLUMNS, fresh)
                if stale:
                    cursor.executemany(
                        f"UPDATE suppression SET source = {q}, reason = {q}, bounce_type = {q}, first_seen = {q}, "
                        f"last_seen = {q}, expires_at = {q}, note = {q}, event_count = 1, last_event_id = NULL "
                        f"WHERE address = {q} AND scope = {q}",
                        stale,
                    )
                self._bulk_insert(cursor, "event", _EVENT_INSERT_COLUMNS, events)
                return len(events)
            finally:
                cursor.close()

        added = self._write(work)
        report.added += added
        report.already_suppressed += len(rows) - added


def _clean(value: Any) -> Any:
    """Text as PostgreSQL can store it (no NUL characters, which a report may carry)."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _check_text(**values: str | None) -> None:
    """QueryError for an argument no database can store or compare (a NUL character)."""
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise QueryError(f"{name} contains a NUL character")


class _Retry(Exception):
    """A connection died under a write; the write is tried again on a fresh one."""


@dataclass(frozen=True, slots=True)
class _Context:
    """The message a verdict being recorded belongs to."""

    message: MessageRef
    ledger_id: int
    received: datetime
    now: datetime


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


IMPORT_BATCH_SQLITE = 5000
IMPORT_BATCH_PG = 2000
"""PostgreSQL batches hold one advisory lock per address; keep them well inside the lock table."""
_IMPORT_COLUMNS = ("address", "domain", "scope", "source", "reason", "bounce_type", "first_seen", "last_seen",
                   "expires_at", "event_count", "note")
_EVENT_INSERT_COLUMNS = tuple(c.name for c in _E.columns if c.name != "id")
_EV = {name: n for n, name in enumerate(_EVENT_INSERT_COLUMNS)}
_INSERT_EVENT_SQL = {
    pg: f"INSERT INTO event ({', '.join(_EVENT_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s' if pg else '?'] * len(_EVENT_INSERT_COLUMNS))}) RETURNING id"
    for pg in (False, True)
}


def _import_event_template() -> tuple[Any, ...]:
    values: dict[str, Any] = {name: "" for name in _EVENT_INSERT_COLUMNS}
    values.update(message_ref=None, uidvalidity=None, uid=None, counted=False, expires_at=None,
                  kind=StoreKind.IMPORT, decision="add")
    return tuple(values[name] for name in _EVENT_INSERT_COLUMNS)


_IMPORT_EVENT_TEMPLATE = _import_event_template()


def _change_values(
    kind: str,
    decision: str,
    address: str,
    *,
    scope: str,
    now: datetime,
    reason: str,
    bounce_type: str,
    expires_at: datetime | None,
    explanation: str,
    actor: str,
) -> dict[str, Any]:
    return {
        "message_ref": None,
        "kind": kind,
        "address": address,
        "domain": address_domain(address),
        "recipient": address,
        "scope": scope,
        "mailbox": "",
        "uidvalidity": None,
        "uid": None,
        "original_message_id": "",
        "original_from": "",
        "dsn_action": "",
        "status": "",
        "reply_code": "",
        "smtp_command": "",
        "diagnostic": "",
        "diagnostic_type": "",
        "remote_mta": "",
        "reporting_mta": "",
        "mta": "",
        "feedback_type": "",
        "reason": reason,
        "bounce_type": bounce_type,
        "rule_id": "",
        "decision": decision,
        "counted": False,
        "expires_at": expires_at,
        "explanation": explanation,
        "actor": actor,
        "received_at": now,
        "recorded_at": now,
    }


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's message, first line only (never the URL, which may carry a password)."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
