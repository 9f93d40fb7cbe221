"""Where the policy service finds suppression entries: an in-memory copy, or the store itself.

``MemoryLookup`` (the default) holds every active entry in dicts (per scope, sharded) and keeps
them current from the ``event`` table: every change to the suppression list is an event row, so
each refresh reads the events after the last one it saw, then the current entries of just those
addresses, and replaces them address by address (a request never sees an address half-changed).
The whole list is read again at start, every ``full_reload_seconds`` and on SIGHUP, into a new
copy that replaces the old one when complete.

All database calls run in worker threads; everything that changes the copy runs on the event
loop in small slices between requests, so that answers never wait long behind a refresh (a
thread would hold the GIL for whole switch intervals while it builds a million entries). The
copy is frozen for the cyclic garbage collector (``gc.freeze``): a full collection walking a
million entries would stall the service for tens of milliseconds.

On SQLite writers are serialised, so event ids commit in order; on PostgreSQL a transaction can
commit after one with a higher id, so events are re-read ``refresh_overlap_seconds`` back (ids
already applied are skipped).

``QueryLookup`` asks ``Store.is_suppressed`` for each recipient (an index probe), with a small
LRU in front; it blocks the event loop for the query (tens of microseconds on SQLite, a round
trip on PostgreSQL).

Either raises ``StoreUnavailable`` when it cannot answer, and the service then fails open or
closed as configured.

Over 500 lines on purpose: the sharded copy, its event-loop slicing and the refresh floor only
make sense together; the SQL they need lives in processor.store.snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from processor.policyd._answers import GLOBAL_SCOPE, Answerer, Hit

if TYPE_CHECKING:
    from processor.config import Settings
    from processor.store import Store

__all__ = ["Lookup", "MemoryLookup", "QueryLookup", "StoreUnavailable"]

log = structlog.get_logger(__name__)

EVENT_PAGE = 20_000
"""Events read per query by an incremental refresh."""
FULL_RELOAD_AFTER = 200_000
"""An incremental refresh that finds more changed events than this reads the whole list instead."""
LOAD_CHUNK = 1000
"""Entries fetched per call (in a worker thread) by a full load."""
ADD_SLICE = 250
"""Entries added (or addresses changed) on the event loop before it looks at the network again."""
SHARDS = 256
"""Dicts per scope (see ``_Table``)."""
RELOAD_ID_MARGIN = 10_000
"""PostgreSQL: events re-read after a full reload (see ``MemoryLookup._reload``)."""
MAX_BACKOFF_SECONDS = 30.0


class StoreUnavailable(Exception):
    """The suppression list cannot be consulted now (the message says why)."""


class Lookup(Protocol):
    """What the server needs from a lookup."""

    def find(self, address: str, scope: str, now: float) -> Hit | None:
        """The entry for a normalised address in ``scope`` or the global scope (global first)."""

    async def start(self) -> None:
        """First load (never raises for an unreachable store; ``find`` then raises)."""

    async def run(self) -> None:
        """Background upkeep until cancelled."""

    def request_reload(self) -> None:
        """Read everything again soon (SIGHUP)."""

    def close(self) -> None: ...

    @property
    def size(self) -> int:
        """Entries held in memory."""


# --------------------------------------------------------------------------- database access


def _driver_errors(store: Store) -> tuple[type[BaseException], ...]:
    import sqlalchemy as sa

    from processor.store import StoreError

    return (StoreError, sa.exc.SQLAlchemyError, store.engine.dialect.loaded_dbapi.Error, OSError)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


Row = tuple[str, str, str, str, str, Any]
"""``processor.store.snapshot.ActiveRow``: address, scope, source, reason, bounce_type, expires_at."""


# --------------------------------------------------------------------------- memory


class _Table:
    """The active entries of one scope, in SHARDS dicts by address hash: a dict of a million
    entries would stall the service for tens of milliseconds each time it grows (the GIL is
    held while it is resized); shards grow in steps of well under a millisecond."""

    __slots__ = ("entries", "expires", "mask")

    def __init__(self, shards: int = SHARDS) -> None:
        self.mask = shards - 1
        self.entries: list[dict[str, Hit]] = [{} for _ in range(shards)]
        self.expires: list[dict[str, float]] = [{} for _ in range(shards)]
        """Expiry (epoch seconds) of the entries whose Hit is ``expiring``."""

    def get(self, address: str, now: float) -> Hit | None:
        shard = hash(address) & self.mask
        found = self.entries[shard].get(address)
        if found is not None and found.expiring and self.expires[shard][address] <= now:
            return None
        return found

    def set(self, address: str, hit: Hit, expiry: float) -> None:
        shard = hash(address) & self.mask
        self.entries[shard][address] = hit
        if hit.expiring:
            self.expires[shard][address] = expiry
        else:
            self.expires[shard].pop(address, None)

    def discard(self, address: str) -> None:
        shard = hash(address) & self.mask
        if self.entries[shard].pop(address, None) is not None:
            self.expires[shard].pop(address, None)

    def __contains__(self, address: str) -> bool:
        return address in self.entries[hash(address) & self.mask]

    def __len__(self) -> int:
        return sum(len(shard) for shard in self.entries)


@dataclass(slots=True)
class _Snapshot:
    tables: dict[str, _Table]

    @property
    def size(self) -> int:
        return sum(len(t) for t in self.tables.values())


class _Builder:
    """A new snapshot, filled chunk by chunk."""

    def __init__(self, answerer: Answerer) -> None:
        from processor.store.snapshot import expiry_epoch

        self.hit = answerer.hit
        self.epoch = expiry_epoch
        self.tables: dict[str, _Table] = {GLOBAL_SCOPE: _Table()}

    def add(self, rows: Iterable[Row]) -> None:
        hit, tables, epoch = self.hit, self.tables, self.epoch
        current_scope = GLOBAL_SCOPE
        table = tables[GLOBAL_SCOPE]
        entries, expires, mask = table.entries, table.expires, table.mask
        for address, scope, source, reason, bounce_type, expires_at in rows:
            if scope != current_scope:
                current_scope = scope
                table = tables.get(scope) or tables.setdefault(scope, _Table())
                entries, expires, mask = table.entries, table.expires, table.mask
            shard = hash(address) & mask
            if expires_at is None:
                entries[shard][address] = hit(scope, source, reason or "", bounce_type or "", False)
            else:
                entries[shard][address] = hit(scope, source, reason or "", bounce_type or "", True)
                expires[shard][address] = epoch(expires_at)

    def snapshot(self) -> _Snapshot:
        return _Snapshot(self.tables)


@dataclass(slots=True)
class _Changes:
    """The new state of some addresses, to apply on the event loop."""

    addresses: set[str]
    rows: list[tuple[str, str, Hit, float]]
    """(address, scope, hit, expiry)"""


async def _release(snapshot: _Snapshot) -> None:
    """Free an old copy a shard at a time (freeing a million entries at once stalls for ~0.1 s)."""
    for table in snapshot.tables.values():
        for shard in range(len(table.entries)):
            table.entries[shard] = {}
            table.expires[shard] = {}
            if shard % 16 == 15:
                await asyncio.sleep(0)


class MemoryLookup:
    """Every active entry in memory, kept current from the event table (see the module docstring)."""

    def __init__(self, settings: Settings, answerer: Answerer) -> None:
        self.settings = settings
        self.policyd = settings.policyd
        self.answerer = answerer
        self._store: Store | None = None
        self._snapshot: _Snapshot | None = None
        self._fresh_at = 0.0
        """monotonic() of the last successful refresh."""
        self._loaded_at = 0.0
        self._floor = 0
        self._seen: set[int] = set()
        self._marks: deque[tuple[float, int]] = deque()
        self._reload_requested = False
        self._unavailable_logged = False
        self._overlap = 0.0

    # -- answering (event loop) ------------------------------------------------------------

    def find(self, address: str, scope: str, now: float) -> Hit | None:
        snapshot = self._snapshot
        if snapshot is None:
            raise StoreUnavailable("the suppression list has not been loaded yet")
        if time.monotonic() - self._fresh_at > self.policyd.max_staleness_seconds:
            raise StoreUnavailable(f"the suppression list was last read {self.staleness():.0f}s ago")
        tables = snapshot.tables
        found = tables[GLOBAL_SCOPE].get(address, now)
        if found is not None or scope == GLOBAL_SCOPE:
            return found
        scoped = tables.get(scope)
        return None if scoped is None else scoped.get(address, now)

    def staleness(self) -> float:
        return time.monotonic() - self._fresh_at

    @property
    def size(self) -> int:
        return 0 if self._snapshot is None else self._snapshot.size

    # -- upkeep ----------------------------------------------------------------------------

    def _open(self) -> Store:
        if self._store is None:
            from processor.store import StoreError, open_store

            try:
                self._store = open_store(self.settings)
            except StoreError as exc:
                raise StoreUnavailable(_first_line(exc)) from None
            self._overlap = (
                self.policyd.refresh_overlap_seconds if self._store.engine.dialect.name == "postgresql" else 0.0
            )
        return self._store

    async def _full_load(self) -> tuple[_Snapshot, int, float]:
        """(snapshot, max event id before the read, seconds taken).

        The database work runs in a worker thread, a chunk at a time; each chunk is added on the
        event loop in slices, between requests: a thread building a million entries would hold
        the GIL for whole switch intervals. The cyclic garbage collector is off meanwhile (a full
        collection would walk the growing copy), and the finished copy is frozen (``gc.freeze``)
        so that no later collection walks it either."""
        started = time.monotonic()
        store = await asyncio.to_thread(self._open)
        errors = _driver_errors(store)
        collecting = gc.isenabled()
        gc.disable()
        try:
            max_id = await asyncio.to_thread(store.max_event_id)
            scan = await asyncio.to_thread(lambda: store.scan_active(now=_moment(time.time())))
            try:
                self.answerer.forget_hits()
                builder = _Builder(self.answerer)
                while True:
                    rows = await asyncio.to_thread(scan.fetch, LOAD_CHUNK)
                    if not rows:
                        break
                    for start in range(0, len(rows), ADD_SLICE):
                        builder.add(rows[start : start + ADD_SLICE])
                        await asyncio.sleep(0)
            finally:
                await asyncio.to_thread(scan.close)
        except errors as exc:
            raise StoreUnavailable(_first_line(exc)) from None
        finally:
            if collecting:
                gc.enable()
        return builder.snapshot(), max_id, time.monotonic() - started

    def _read_changes(self) -> _Changes | None:
        """The changed addresses' current entries since the floor; None: too many, reload all."""
        store = self._open()
        errors = _driver_errors(store)
        try:
            addresses: set[str] = set()
            new_ids: list[int] = []
            after = self._floor
            while True:
                rows = store.events_after(after, EVENT_PAGE)
                for event_id, address in rows:
                    if event_id not in self._seen:
                        new_ids.append(event_id)
                        if address:
                            addresses.add(address)
                if len(rows) < EVENT_PAGE:
                    break
                after = rows[-1][0]
                if len(new_ids) > FULL_RELOAD_AFTER:
                    return None
            now = time.time()
            changed = store.active_rows(sorted(addresses), now=_moment(now)) if addresses else []
        except errors as exc:
            raise StoreUnavailable(_first_line(exc)) from None
        from processor.store.snapshot import expiry_epoch

        hit = self.answerer.hit
        made = [
            (address, scope, hit(scope, source, reason or "", bounce_type or "", expires_at is not None),
             expiry_epoch(expires_at))
            for address, scope, source, reason, bounce_type, expires_at in changed
        ]
        self._advance(new_ids)
        return _Changes(addresses, made)

    def _advance(self, new_ids: list[int]) -> None:
        """Move the floor: ids at or below it are never read again (see the module docstring)."""
        now = time.monotonic()
        self._seen.update(new_ids)
        top = max(new_ids, default=self._floor)
        if self._marks:
            top = max(top, self._marks[-1][1])
        self._marks.append((now, top))
        floor = self._floor
        while self._marks and self._marks[0][0] <= now - self._overlap:
            floor = max(floor, self._marks.popleft()[1])
        if floor != self._floor:
            self._floor = floor
            self._seen = {i for i in self._seen if i > floor}

    async def _apply(self, changes: _Changes) -> None:
        """Replace the entries of the changed addresses on the event loop, ADD_SLICE addresses at
        a time: each address changes at once (a request never sees it half-changed)."""
        snapshot = self._snapshot
        if snapshot is None:
            return
        tables = snapshot.tables
        fresh: dict[str, list[tuple[str, Hit, float]]] = {}
        for address, scope, hit, expiry in changes.rows:
            fresh.setdefault(address, []).append((scope, hit, expiry))
        addresses = sorted(changes.addresses)
        for start in range(0, len(addresses), ADD_SLICE):
            for address in addresses[start : start + ADD_SLICE]:
                for held in tables.values():
                    held.discard(address)
                for scope, hit, expiry in fresh.get(address, ()):
                    table = tables.get(scope)
                    if table is None:
                        table = tables[scope] = _Table()
                    table.set(address, hit, expiry)
            if start + ADD_SLICE < len(addresses):
                await asyncio.sleep(0)

    async def _reload(self) -> None:
        snapshot, max_id, seconds = await self._full_load()
        old, self._snapshot = self._snapshot, snapshot
        gc.freeze()
        if old is not None:
            await _release(old)
        now = time.monotonic()
        self._fresh_at = self._loaded_at = now
        if self._overlap:
            # A transaction that took its event id before the read may commit after it: the next
            # refreshes re-read the last RELOAD_ID_MARGIN ids, then the floor trails by the overlap.
            self._floor = max(self._floor, max_id - RELOAD_ID_MARGIN, 0)
            self._seen = {i for i in self._seen if i > self._floor}
            self._marks.append((now, max_id))
        else:
            self._floor, self._seen, self._marks = max_id, set(), deque()
        self._reload_requested = False
        log.info("policyd.loaded", entries=snapshot.size, scopes=len(snapshot.tables), seconds=round(seconds, 3))

    async def _refresh(self) -> None:
        changes = await asyncio.to_thread(self._read_changes)
        if changes is None:
            log.info("policyd.reload", why="many changes at once")
            await self._reload()
            return
        if changes.addresses:
            await self._apply(changes)
            log.debug("policyd.refreshed", addresses=len(changes.addresses))
        self._fresh_at = time.monotonic()

    def _failed(self, exc: StoreUnavailable) -> None:
        if not self._unavailable_logged:
            log.warning("policyd.store_unavailable", reason=str(exc), answer=self.answerer.store_error_verdict,
                        held_entries=self.size)
            self._unavailable_logged = True

    def _recovered(self) -> None:
        if self._unavailable_logged:
            log.info("policyd.store_available", entries=self.size)
            self._unavailable_logged = False

    async def start(self) -> None:
        try:
            await self._reload()
        except StoreUnavailable as exc:
            self._failed(exc)

    async def run(self) -> None:
        from processor.backoff import Backoff

        retry = Backoff(initial=max(self.policyd.refresh_seconds * 2, 1.0), maximum=MAX_BACKOFF_SECONDS)
        wait = self.policyd.refresh_seconds
        while True:
            await asyncio.sleep(wait)
            try:
                due = time.monotonic() - self._loaded_at >= self.policyd.full_reload_seconds
                if self._snapshot is None or self._reload_requested or due:
                    await self._reload()
                else:
                    await self._refresh()
            except StoreUnavailable as exc:
                self._failed(exc)
                self._close_store()
                wait = retry.failed()
                continue
            self._recovered()
            retry.succeeded()
            wait = self.policyd.refresh_seconds

    def request_reload(self) -> None:
        self._reload_requested = True

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def close(self) -> None:
        self._close_store()


# --------------------------------------------------------------------------- query


class QueryLookup:
    """One indexed query per recipient (``Store.is_suppressed``) behind a per-process LRU."""

    def __init__(self, settings: Settings, answerer: Answerer) -> None:
        self.settings = settings
        self.policyd = settings.policyd
        self.answerer = answerer
        self._store: Store | None = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._retry_at = 0.0
        self._last_error = ""
        self._cache: OrderedDict[tuple[str, str], tuple[float, Hit | None]] = OrderedDict()

    @property
    def size(self) -> int:
        return len(self._cache)

    def _open(self) -> Store:
        if self._store is not None:
            return self._store
        if time.monotonic() < self._retry_at:
            raise StoreUnavailable(self._last_error)
        from processor.store import StoreError, open_store

        try:
            self._store = open_store(self.settings)
        except StoreError as exc:
            self._retry_at = time.monotonic() + 1.0
            self._last_error = _first_line(exc)
            log.warning("policyd.store_unavailable", reason=self._last_error,
                        answer=self.answerer.store_error_verdict)
            raise StoreUnavailable(self._last_error) from None
        self._errors = _driver_errors(self._store)
        return self._store

    def find(self, address: str, scope: str, now: float) -> Hit | None:
        key = (address, scope)
        cache = self._cache
        cached = cache.get(key)
        if cached is not None and cached[0] > now:
            cache.move_to_end(key)
            return cached[1]
        store = self._open()
        try:
            entry = store.is_suppressed(address, scope)
        except self._errors as exc:
            reason = _first_line(exc)
            if reason != self._last_error:
                log.warning("policyd.store_unavailable", reason=reason, answer=self.answerer.store_error_verdict)
                self._last_error = reason
            raise StoreUnavailable(reason) from None
        if self._last_error:
            log.info("policyd.store_available")
            self._last_error = ""
        if entry is None:
            found: Hit | None = None
            valid_until = now + self.policyd.cache_ttl_seconds
        else:
            expiring = entry.expires_at is not None
            found = self.answerer.hit(entry.scope, entry.source, entry.reason, entry.bounce_type, expiring)
            valid_until = now + self.policyd.cache_ttl_seconds
            if entry.expires_at is not None:
                valid_until = min(valid_until, entry.expires_at.timestamp())
        if self.policyd.cache_size:
            cache[key] = (valid_until, found)
            cache.move_to_end(key)
            if len(cache) > self.policyd.cache_size:
                cache.popitem(last=False)
        return found

    async def start(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            await asyncio.to_thread(self._open)

    async def run(self) -> None:
        await asyncio.Event().wait()

    def request_reload(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
