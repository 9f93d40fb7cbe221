"""The seam between the daemon and where mail comes from: ``MailSource``.

The daemon's pipeline (processor.daemon.service) works any source the same way::

    state = await source.open()                      # connect, select; UIDVALIDITY (or None)
    keys = await source.candidates(last_uid)         # what may need processing, oldest first
    messages = await source.fetch(keys[:batch])      # the bytes, nothing marked \\Seen
    ... parse, classify, store (one transaction) ...
    await source.dispose(done, Disposal.PROCESSED)   # only after the commit
    await source.dispose(bad, Disposal.QUARANTINE)
    await source.wait_for_mail(seconds, stop)        # IDLE, or a plain sleep
    await source.close()

Implementations: ``processor.sources.imap.ImapSource`` (aioimaplib), ``processor.sources.local``
(Maildir and directory); the tests have an in-memory one (``tests/daemon/memory_source.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class SourceError(Exception):
    """A source cannot be read or changed right now (connection lost, command failed, timeout).

    The message names the mailbox and the reason, never a password. ``transient`` errors are
    retried with backoff; the others (bad credentials, refused certificate) too, but they are logged
    as configuration problems."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class Disposal(StrEnum):
    """Where a message goes once its outcome is committed."""

    PROCESSED = "processed"
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class SourceState:
    """What ``open`` found: the folder's UIDVALIDITY (None: the source has no UIDs) and how many
    messages it holds (None: unknown)."""

    uidvalidity: int | None
    exists: int | None = None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One message as fetched: its key in the source, its IMAP UID (None for files), its bytes,
    its arrival time when the source knows it, and a label for logs (a UID or a path)."""

    key: int
    uid: int | None
    data: bytes
    received_at: datetime | None
    label: str


class MailSource(ABC):
    """One folder (or directory) of reports."""

    name: str
    """The mailbox's name in the ledger, the logs and the metrics (e.g. "bounces/INBOX")."""
    uses_uids: bool = False
    """Keys are IMAP UIDs, stable under UIDVALIDITY (the daemon stores the last one)."""
    keeps_processed: bool = False
    """Processed messages stay where they are (IMAP "seen"/"keep", read-only directories): the
    daemon reads only keys above the last one stored, and relies on the ledger for the rest."""

    @abstractmethod
    async def open(self) -> SourceState:
        """Connect (if needed) and select the folder."""

    @abstractmethod
    async def candidates(self, last_uid: int) -> list[int]:
        """Keys of the messages that may need processing or disposing, ascending."""

    @abstractmethod
    async def fetch(self, keys: Sequence[int]) -> list[FetchedMessage]:
        """The messages with these keys (missing ones are left out), without marking them read."""

    @abstractmethod
    async def dispose(self, keys: Sequence[int], disposal: Disposal) -> None:
        """Move (or flag, or delete) committed messages; creates a missing target folder."""

    async def wait_for_mail(self, seconds: float, stop: asyncio.Event) -> bool:
        """Wait up to ``seconds`` for new mail (or ``stop``). True when mail may have arrived.
        The default sleeps (polling); IMAP uses IDLE when the server offers it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
        return False

    @property
    def can_push(self) -> bool:
        """Whether ``wait_for_mail`` returns as soon as mail arrives (IMAP IDLE)."""
        return False

    async def close(self) -> None:  # noqa: B027 - sources without a connection have nothing to close
        """Log out and drop the connection (never raises)."""

    async def abort(self) -> None:
        """Drop the connection at once, without a goodbye (never raises)."""
        await self.close()
