"""An in-memory ``MailSource``, a test double (so it lives with the tests, not in the package):
a list of messages with UIDs, folders as dicts,
and switches that make a step fail (to test what the daemon does when a source breaks)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from processor.sources.base import Disposal, FetchedMessage, MailSource, SourceError, SourceState


class MemorySource(MailSource):
    """Messages held in memory, keyed by UID (``append`` adds one and returns its UID)."""

    uses_uids = True

    def __init__(self, name: str = "memory/INBOX", *, uidvalidity: int = 1, keep_processed: bool = False) -> None:
        self.name = name
        self.uidvalidity = uidvalidity
        self.keeps_processed = keep_processed
        self.inbox: dict[int, bytes] = {}
        self.folders: dict[str, list[bytes]] = {Disposal.PROCESSED: [], Disposal.QUARANTINE: []}
        self.next_uid = 1
        self.fail_open: Exception | None = None
        self.fail_dispose: Exception | None = None
        self.opened = 0
        self.closed = 0
        self.fetched: list[int] = []
        self._arrived = asyncio.Event()

    def append(self, data: bytes, received_at: datetime | None = None) -> int:
        uid = self.next_uid
        self.next_uid += 1
        self.inbox[uid] = data
        self._arrived.set()
        return uid

    def renumber(self, uidvalidity: int) -> None:
        """Simulate a UIDVALIDITY change: the same messages under new UIDs."""
        messages = [self.inbox[uid] for uid in sorted(self.inbox)]
        self.uidvalidity = uidvalidity
        self.inbox = {}
        self.next_uid = 1
        for data in messages:
            self.append(data)

    async def open(self) -> SourceState:
        self.opened += 1
        if self.fail_open is not None:
            raise self.fail_open
        return SourceState(self.uidvalidity, len(self.inbox))

    async def candidates(self, last_uid: int) -> list[int]:
        uids = sorted(self.inbox)
        return [u for u in uids if u > last_uid] if self.keeps_processed else uids

    async def fetch(self, keys: Sequence[int]) -> list[FetchedMessage]:
        self.fetched.extend(keys)
        return [FetchedMessage(k, k, self.inbox[k], None, f"uid {k}") for k in keys if k in self.inbox]

    async def dispose(self, keys: Sequence[int], disposal: Disposal) -> None:
        if self.fail_dispose is not None:
            raise self.fail_dispose
        for key in keys:
            if key not in self.inbox:
                continue
            if self.keeps_processed and disposal is Disposal.PROCESSED:
                continue
            self.folders[disposal].append(self.inbox.pop(key))

    async def wait_for_mail(self, seconds: float, stop: asyncio.Event) -> bool:
        self._arrived.clear()
        waiters = {asyncio.ensure_future(self._arrived.wait()), asyncio.ensure_future(stop.wait())}
        _done, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return self._arrived.is_set()

    @property
    def can_push(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed += 1


def broken(reason: str = "connection refused") -> SourceError:
    """The error a broken mailbox raises (for tests)."""
    return SourceError(reason)
