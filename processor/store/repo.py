"""The store's front: everything the daemon, the API and the CLI do with the database.

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
    store.record_pass("b/INBOX", holder=..., handled=..., backlog=...)  # the daemon, once per pass
    store.request_reprocess(failed_id, actor=..., note=...)   # "process again" (the daemon does it)

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

``Store`` is a thin facade; the work lives in modules named for what they do: ``_db`` (connections,
the write retry, dialect details), ``ledger`` (processed and failed messages, mailbox positions),
``recording`` (the pipeline's write), ``suppressions`` (reads), ``snapshot`` (reads for a copy
of the list kept in memory), ``changes`` (add, remove, purge, import) and ``types`` (the records).
Each takes the ``Database`` and, where it decides, the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

from processor.config import Settings
from processor.decide import GLOBAL_SCOPE, Source
from processor.records import Verdict
from processor.store import changes, ledger, passes, quarantine, recording, snapshot, suppressions
from processor.store import models as m
from processor.store._db import Database, as_utc, utcnow
from processor.store.outbox import Outbox
from processor.store.snapshot import ActiveRow, ActiveScan
from processor.store.types import (
    BatchCheck,
    Entry,
    EntryFilter,
    EventRecord,
    ImportReport,
    ImportRow,
    MailboxPosition,
    MessageRef,
    Page,
    RecordResult,
    Rejected,
    Stats,
)

__all__ = ["Store"]

T = TypeVar("T")

class Store:
    """The suppression store (see the module docstring)."""

    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        self.engine = engine
        self.settings = settings or Settings()
        self.policy = self.settings.policy
        self.database = Database(engine, lowercase_local=self.settings.database.lowercase_local_part)
        self.outbox = Outbox(self.settings.outbox)

    # ----------------------------------------------------------------- plumbing

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, with the store's retries (for the modules that
        take a Connection, such as processor.store.outbox)."""
        return self.database.write(work)

    def normalise(self, address: str) -> str:
        """The canonical form of an address (AddressError if it is not one)."""
        return self.database.normalise(address)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Check that the database answers (for a readiness probe); StoreError if it does not."""
        self.database.raw_read("SELECT 1", ())

    # ----------------------------------------------------------------- ledger

    def recorded_uids(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        """Which of these UIDs the ledger holds for (mailbox, UIDVALIDITY): committed earlier."""
        return ledger.recorded_uids(self.database, mailbox, uidvalidity, uids)

    def recorded_hashes(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes the ledger holds."""
        return ledger.hashes_in(self.database, m.processed_message, hashes)

    def failed_hashes(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes were recorded as failed (quarantined) already."""
        return ledger.hashes_in(self.database, m.failed_message, hashes)

    def seen(self, message: MessageRef) -> bool:
        """Whether the ledger has this message, by (mailbox, uidvalidity, uid) or content hash."""
        return ledger.ledger_id(self.database, message) is not None

    def record_failed(
        self, message: MessageRef, error: str, *, status: str = "quarantined", now: datetime | None = None
    ) -> int:
        """Record a message that was quarantined or failed, with its error. Not a ledger entry: the
        same message is processed normally once the problem is fixed."""
        return ledger.record_failed(self.database, message, error, status=status, now=now,
                                    keep_report_kib=self.settings.database.keep_report_kib)

    def get_mailbox_state(self, mailbox: str) -> MailboxPosition | None:
        return ledger.get_mailbox_state(self.database, mailbox)

    def set_mailbox_state(self, mailbox: str, uidvalidity: int, last_uid: int, *, now: datetime | None = None) -> None:
        """Set a mailbox's UIDVALIDITY and last UID (a new UIDVALIDITY resets the position)."""
        ledger.set_mailbox_state(self.database, mailbox, uidvalidity, last_uid, now=now)

    # ----------------------------------------------------------------- passes and quarantine

    def record_pass(self, mailbox: str, *, holder: str, handled: int, backlog: int | None) -> None:
        """A pass of ``mailbox`` ended: its backlog and lease holder (processor.store.passes)."""
        passes.record_pass(self.database, mailbox, holder=holder, handled=handled, backlog=backlog)

    def record_pass_error(self, mailbox: str, *, holder: str, error: str) -> None:
        """A pass of ``mailbox`` failed with ``error`` (processor.store.passes)."""
        passes.record_pass_error(self.database, mailbox, holder=holder, error=error)

    def release_holder(self, mailboxes: list[str], holder: str) -> None:
        """``holder`` gave these mailboxes' leases back (processor.store.passes)."""
        passes.release_holder(self.database, mailboxes, holder)

    def request_reprocess(self, failed_id: int, *, actor: str, note: str = "") -> None:
        """Ask the daemon to process a quarantined message again (processor.store.quarantine)."""
        quarantine.request_reprocess(self.database, failed_id, actor=actor, note=note)

    def requested_messages(self, mailboxes: list[str], limit: int = 50) -> list[quarantine.Requested]:
        """Quarantined messages of these mailboxes that an operator asked to process again."""
        return quarantine.requested_messages(self.database, mailboxes, limit)

    def finish_reprocess(self, failed_id: int, *, actor: str, error: str = "", message_ref: int | None = None) -> None:
        """Record the outcome of processing a requested message again (processor.store.quarantine)."""
        quarantine.finish_reprocess(self.database, failed_id, actor=actor, error=error, message_ref=message_ref)

    # ----------------------------------------------------------------- recording

    def record_message(
        self,
        message: MessageRef,
        verdicts: Sequence[Verdict],
        *,
        now: datetime | None = None,
        advance_mailbox: bool = True,
        addresses: Sequence[tuple[str, str]] | None = None,
    ) -> RecordResult:
        """Record one message in ONE transaction: the ledger row, an event per verdict (with the
        policy's decision) and the suppression changes. A message seen before by either key is a
        duplicate: nothing is written and ``duplicate`` is True. With ``advance_mailbox`` the
        mailbox's last UID moves forward to this UID (when its UIDVALIDITY matches)."""
        return self.record_messages([(message, verdicts)], now=now, advance_mailbox=advance_mailbox,
                                    addresses=[addresses])[0]

    def record_messages(
        self,
        messages: Sequence[tuple[MessageRef, Sequence[Verdict]]],
        *,
        now: datetime | None = None,
        advance_mailbox: bool = True,
        addresses: Sequence[Sequence[tuple[str, str]] | None] | None = None,
    ) -> list[RecordResult]:
        """``record_message`` for several messages in ONE transaction (all or none are committed):
        one commit, one fsync, for a batch. A duplicate (also within the batch) counts nothing.
        ``addresses`` (per message, None or per verdict): each recipient normalised already as
        this store does it (``normalise_address`` with its ``lowercase_local_part``): the address,
        or "" and why it is none; the daemon's parse pool does that work off this process."""
        return recording.record_messages(self.database, self.policy, messages, now=now, outbox=self.outbox,
                                         advance_mailbox=advance_mailbox, addresses=addresses,
                                         keep_report_kib=self.settings.database.keep_report_kib)

    # ----------------------------------------------------------------- reads

    def count_active(self, *, now: datetime | None = None) -> int:
        """How many suppression entries are in force (not expired) now."""
        return suppressions.count_active(self.database, now=now)

    def is_suppressed(self, address: str, scope: str = GLOBAL_SCOPE, *, now: datetime | None = None) -> Entry | None:
        """The active entry for the address in ``scope`` (a global entry counts in every scope,
        and is preferred), or None. Expired entries never count. AddressError for a bad address."""
        return suppressions.is_suppressed(self.database, address, scope, now=now)

    def check_many(
        self, addresses: Iterable[str], scope: str = GLOBAL_SCOPE, *, now: datetime | None = None
    ) -> BatchCheck:
        """Which of ``addresses`` are suppressed in ``scope`` (keyed by the addresses as given);
        invalid ones are reported, not raised. The caller bounds the batch size."""
        return suppressions.check_many(self.database, addresses, scope, now=now)

    def list_entries(
        self,
        filters: EntryFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> Page:
        """One page of entries in id order (stable: entries added later come after the cursor)."""
        return suppressions.list_entries(self.database, filters, cursor=cursor, limit=limit, now=now)

    def iter_entries(
        self, filters: EntryFilter | None = None, *, now: datetime | None = None, batch: int = 5000
    ) -> Iterator[Entry]:
        """Every matching entry, streamed in id order in batches (for export)."""
        return suppressions.iter_entries(self.database, filters, now=now, batch=batch)

    def history(
        self, address: str, *, scope: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[EventRecord]:
        """The address's events, newest first (``before_id`` pages further back)."""
        return suppressions.history(self.database, address, scope=scope, limit=limit, before_id=before_id)

    def events_to_review(self, since: datetime, *, limit: int = 10_000) -> list[tuple[EventRecord, str]]:
        """Failures and delays no rule decided, or whose address an operator changed by hand
        later, since ``since`` (for ``rules suggest``), each with that change ("" if none)."""
        return suppressions.events_to_review(self.database, since, limit=limit)

    def stats(
        self, since: datetime | None = None, until: datetime | None = None, *, top: int = 20
    ) -> Stats:
        """Counts of report events in [since, until) by bounce type, reason, domain, mailbox and
        decision (default: the last 7 days; the ``top`` largest groups for domain and reason), and
        of active entries by source and bounce type."""
        return suppressions.stats(self.database, since, until, top=top)

    # ----------------------------------------------------------------- copies of the list (policyd)

    def scan_active(self, *, now: datetime | None = None) -> ActiveScan:
        """Every active entry, streamed in chunks (``ActiveScan.fetch``); close it when done."""
        return ActiveScan(self.database, as_utc(now) or utcnow())

    def max_event_id(self) -> int:
        """The newest event id (0 when there is none): a copy read after it misses no change."""
        return snapshot.max_event_id(self.database)

    def events_after(self, event_id: int, limit: int) -> list[tuple[int, str]]:
        """(id, address) of up to ``limit`` events after ``event_id``: the addresses that changed."""
        return snapshot.events_after(self.database, event_id, limit)

    def active_rows(self, addresses: Sequence[str], *, now: datetime | None = None) -> list[ActiveRow]:
        """The active entries (every scope) of these normalised addresses, as ``ActiveRow``."""
        return snapshot.active_rows(self.database, list(addresses), as_utc(now) or utcnow())

    # ----------------------------------------------------------------- manual changes

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
        return changes.add(self.database, address, reason=reason, scope=scope, expires_at=expires_at, note=note,
                           outbox=self.outbox,
                           actor=actor, source=source, bounce_type=bounce_type, now=now)

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
        return changes.remove(self.database, self.policy, address, scope=scope, note=note, actor=actor,
                              outbox=self.outbox,
                              allow_days=allow_days, now=now)

    def purge_expired(self, *, now: datetime | None = None, batch_size: int = 1000) -> int:
        """Delete expired entries (recording an "expired" event for each); returns how many."""
        return changes.purge_expired(self.database, now=now, batch_size=batch_size, outbox=self.outbox)

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
        the report keeps the first ``keep_rejected``) and nothing else is lost."""
        return changes.import_rows(self.database, rows, actor=actor, now=now, batch_size=batch_size,
                                   on_rejected=on_rejected, keep_rejected=keep_rejected, outbox=self.outbox)
