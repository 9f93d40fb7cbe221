"""The store's records: what its calls take and return (frozen dataclasses, no database code).

Declared here once so the API schemas, the client test and the store modules share one
definition of each record's fields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from processor.decide import GLOBAL_SCOPE, Source
from processor.records import Decision, EventKind


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


@dataclass(frozen=True, slots=True)
class MessageRef:
    """The identity of one message: where it is and what it contains."""

    mailbox: str
    content_hash: str
    uidvalidity: int | None = None
    uid: int | None = None
    received_at: datetime | None = None
    """When the message arrived (IMAP INTERNALDATE); default: when it is recorded."""
    raw: bytes | None = field(default=None, repr=False, compare=False)
    """The message itself, kept (cut to ``keep_report_kib``) for the console when given."""

    @classmethod
    def for_bytes(
        cls,
        data: bytes,
        mailbox: str,
        uidvalidity: int | None = None,
        uid: int | None = None,
        received_at: datetime | None = None,
    ) -> MessageRef:
        return cls(mailbox, hashlib.sha256(data).hexdigest(), uidvalidity, uid, received_at, data)


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
    last_seen: datetime | None = None
    """None: the import time (a provider's list has no such column)."""
    event_count: int = 1


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

