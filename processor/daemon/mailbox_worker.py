"""The asynchronous edge of the daemon's pipeline around one ``MailSource``:

    fetch -> Pipeline (parse, classify, guard, policy + store: ONE transaction)
          -> dispose (move to Processed / Quarantine, only AFTER the commit) -> advance the position

``MailboxWorker`` reads the source in batches, hands each batch to the ``Pipeline`` (in a worker
thread), disposes of what was committed, keeps the source's position (UIDVALIDITY and last UID)
in the store, and backs off after failures (``processor.backoff``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from processor import metrics
from processor.backoff import Backoff
from processor.config import MailboxSettings
from processor.daemon.pipeline import BatchOutcome, Pipeline, plain_traceback
from processor.sources.base import Disposal, FetchedMessage, MailSource, SourceError
from processor.store import Store, StoreError

__all__ = ["FETCH_AHEAD", "FIRST_BATCH", "LeaseLost", "MailboxWorker", "Runtime", "batch_plan"]

log = structlog.get_logger("processor.daemon.service")
T = TypeVar("T")


STORE_RETRY_MAX_SECONDS = 5.0
"""The longest wait before the database is tried again after a store error."""

FIRST_BATCH = 32
"""The size of a long pass's first batch; the next ones double up to ``batch_size`` (and its last
ones halve down to this again): see ``batch_plan``."""


FETCH_AHEAD = 2
"""Batches a pass fetches before they are parsed (one parsing, the next queued, so the parse pool
never waits for a fetch). With the parsed batch waiting for the commit before it, the one
committing and the one being moved, a pass holds at most FETCH_AHEAD + 2 batches in memory."""


def batch_plan(count: int, size: int, first: int = FIRST_BATCH) -> list[int]:
    """The sizes of the batches that read ``count`` messages, at most ``size`` each.

    A pass is a pipeline of three stages (fetch, parse, commit and move): nothing is parsed
    before the first batch is fetched, and nothing is left to overlap the last batch's commit
    and move. So a pass long enough for it starts with a small batch (``first``) and doubles it
    up to ``size``, and ends the same way in reverse: the parse pool gets its first work after
    32 messages are fetched rather than ``size``, and the pass ends soon after its last fetch.
    The batches in between are ``size`` (the last of them smaller: the remainder)."""
    if count <= 0:
        return []
    ramp: list[int] = []
    step = max(1, min(first, size))
    while step < size and 2 * (sum(ramp) + step) <= count:
        ramp.append(step)
        step *= 2
    middle = count - 2 * sum(ramp)
    full, rest = divmod(middle, size)
    return ramp + [size] * full + ([rest] if rest else []) + ramp[::-1]


def _commit_failed(batch: _InFlight) -> bool:
    """Whether a batch's finished commit failed (``_finish`` raises the failure)."""
    commit = batch.commit
    assert commit is not None and commit.done()
    return commit.cancelled() or commit.exception() is not None or bool(batch.outcome.store_error)


class LeaseLost(Exception):
    """This daemon does not hold the mailbox's lease now (PostgreSQL); ``why`` says what happened
    (another daemon holds it, or the connection holding it broke)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.why = why



@dataclass
class _InFlight:
    """A batch between parse and disposal: its keys, its outcome, its commit (a future)."""

    chunk: Sequence[int]
    uidvalidity: int | None
    outcome: BatchOutcome
    commit: asyncio.Future[None] | None
    parsing: asyncio.Future[BatchOutcome] | None = None
    """Parse and classify, running while the next batch is fetched; ``outcome`` once done."""

    async def parsed(self) -> None:
        if self.parsing is not None:
            parsing, self.parsing = self.parsing, None
            self.outcome = await parsing

    def top(self, last_uid: int) -> int:
        """The highest key up to which every message of the batch was handled."""
        left = {msg.key for msg in self.outcome.left}
        top = last_uid
        for key in self.chunk:
            if key in left:
                break
            top = max(top, key)
        return top


@dataclass
class Runtime:
    """What every worker of one daemon shares."""

    executor: Executor
    stop: asyncio.Event
    """Set on SIGTERM/SIGINT: start nothing new."""
    halt: threading.Event
    """The same, for worker threads: finish the message in hand, then stop."""
    holds: Callable[[str], bool] = lambda name: True
    """Whether this daemon holds the mailbox's lease now."""
    lease_problem: Callable[[str], str] = lambda name: "another daemon holds its lease"
    """Why this daemon does not hold the mailbox's lease (for the log)."""
    rerun: Callable[[str, float], None] = lambda name, delay: None
    """Ask for the mailbox's next run in ``delay`` seconds, sooner than its poll interval (a retry
    after a failure must not wait for the next poll)."""
    identity: str = ""
    """This daemon as the store names a mailbox's lease holder (``host:pid``)."""


class MailboxWorker:
    """Works one ``MailSource``: batches through the pipeline, disposal, position, backoff."""

    def __init__(
        self, source: MailSource, box: MailboxSettings, pipeline: Pipeline, store: Store, runtime: Runtime
    ) -> None:
        self.source = source
        self.name = source.name
        self.box = box
        self.pipeline = pipeline
        self.store = store
        self.runtime = runtime
        self.backoff = Backoff(box.backoff_initial_seconds, box.backoff_max_seconds, jitter=True)
        self.retry_at = 0.0
        self._resumed = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None
        self.wake: asyncio.Event | None = None
        """Set while waiting for new mail: setting it ends the wait."""
        self.totals = {"processed": 0, "duplicate": 0, "quarantined": 0, "already": 0}
        self._io = asyncio.Lock()
        """One source command at a time: the fetches ahead and the moves share the IMAP connection."""

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.runtime.executor, lambda: fn(*args, **kwargs))

    # ----------------------------------------------------------------- one pass

    async def drain(self) -> int:
        """Process everything the source holds now; returns how many messages were handled."""
        source, runtime = self.source, self.runtime
        state = await source.open()
        uidvalidity = state.uidvalidity if source.uses_uids else None
        last_uid = 0
        if uidvalidity is not None:
            position = await self._db(self.store.get_mailbox_state, self.name)
            if position is None or position.uidvalidity != uidvalidity:
                if position is not None:
                    log.warning("mailbox.uidvalidity_changed", mailbox=self.name, before=position.uidvalidity,
                                after=uidvalidity, action="reading the folder again; the ledger skips what it knows")
                await self._db(self.store.set_mailbox_state, self.name, uidvalidity, 0)
            else:
                last_uid = position.last_uid
        keys = await source.candidates(last_uid)
        if keys:
            log.info("mailbox.draining", mailbox=self.name, candidates=len(keys))
        handled = 0
        before = dict(self.totals)
        # Four stages at once: the fetcher (a task) reads batches ahead and starts their parse (at
        # most FETCH_AHEAD batches fetched and not yet parsed); this loop takes them in order, and
        # once the batch before has committed, starts this one's commit (the database) and moves
        # the one before (IMAP) meanwhile. So the parse pool has the next batch queued while it
        # parses one, and the IMAP connection fetches and moves while the database commits.
        ready: asyncio.Queue[_InFlight | Exception | None] = asyncio.Queue()
        slots = asyncio.Semaphore(FETCH_AHEAD)
        done_fetching = asyncio.Event()
        self._io = asyncio.Lock()  # (a new one each pass: a lock belongs to the event loop it first waited on)
        fetcher = asyncio.ensure_future(self._fetch_ahead(keys, uidvalidity, ready, slots, done_fetching))
        in_flight: _InFlight | None = None
        try:
            while True:
                item = await ready.get()
                if item is None:
                    break
                if isinstance(item, Exception):
                    raise item
                await item.parsed()
                slots.release()
                previous, in_flight = in_flight, None
                if previous is not None:
                    assert previous.commit is not None
                    await asyncio.wait({previous.commit})
                    if _commit_failed(previous):  # a database failure: this batch is left in the folder
                        handled += await self._finish(previous)  # raises the failure
                if not runtime.holds(self.name):
                    # parsed, but this daemon no longer holds the mailbox: left in the folder
                    if previous is not None:
                        handled += await self._finish(previous)
                    raise LeaseLost(self.name, runtime.lease_problem(self.name))
                in_flight = self._start_commit(item)
                if previous is not None:  # committed: moved while this batch commits
                    handled += await self._finish(previous)
        finally:
            done_fetching.set()
            slots.release()  # a fetcher waiting for a slot sees done_fetching and ends
            try:
                await asyncio.wait({fetcher})  # it finishes the command in hand: the connection stays in step
            except asyncio.CancelledError:
                # cancelled again while waiting (a shutdown out of time): the fetcher goes too,
                # rather than live on past the pass (its connection is closed next anyway)
                fetcher.cancel()
                raise
            while not ready.empty():  # fetched, maybe parsed, not committed: left in the folder
                item = ready.get_nowait()
                if isinstance(item, _InFlight):
                    with contextlib.suppress(Exception):
                        await item.parsed()
            if in_flight is not None:
                current, in_flight = in_flight, None
                handled += await self._finish(current)
        if keys:
            log.info("mailbox.drained", mailbox=self.name, candidates=len(keys), handled=handled,
                     **{k: v - before[k] for k, v in self.totals.items()})
        await self._record_pass(handled, max(0, len(keys) - handled))
        return handled

    async def _fetch_ahead(
        self,
        keys: Sequence[int],
        uidvalidity: int | None,
        ready: asyncio.Queue[_InFlight | Exception | None],
        slots: asyncio.Semaphore,
        done: asyncio.Event,
    ) -> None:
        """Fetch the pass's batches in order and start their parse, each once a slot is free (at
        most FETCH_AHEAD batches fetched and not yet committed); hand each to ``drain``, then None
        at the end (or the exception that ended the fetching). Stops before the next fetch once
        ``done`` is set (``drain`` ended) or the daemon stops."""
        runtime = self.runtime
        start = 0
        try:
            for size in batch_plan(len(keys), self.box.batch_size):
                await slots.acquire()
                if done.is_set() or runtime.stop.is_set():
                    break
                if not runtime.holds(self.name):
                    raise LeaseLost(self.name, runtime.lease_problem(self.name))
                chunk = keys[start : start + size]
                start += size
                ready.put_nowait(await self._prepare(chunk, uidvalidity))
        except Exception as exc:
            ready.put_nowait(exc)
            return
        ready.put_nowait(None)

    async def _record_pass(self, handled: int, backlog: int) -> None:
        """One write per pass (never per message): when it ended, what is still waiting (the
        candidates it did not get to: a stop, or a batch left for later), and who holds the lease."""
        try:
            await self._db(self.store.record_pass, self.name, holder=self.runtime.identity, handled=handled,
                           backlog=backlog)
        except Exception as exc:  # the position and the ledger are what count; the next pass retries
            log.warning("mailbox.pass_not_recorded", mailbox=self.name, error=f"{type(exc).__name__}: {exc}")

    async def _record_error(self, exc: Exception) -> None:
        """The pass's failure, for the console (best effort: the database may be what failed)."""
        text = str(exc) if isinstance(exc, SourceError | StoreError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            await self._db(self.store.record_pass_error, self.name, holder=self.runtime.identity, error=text)

    async def _prepare(self, chunk: Sequence[int], uidvalidity: int | None) -> _InFlight:
        """Dispose of what the ledger knows already, fetch the rest and start parsing it (no
        writes): the batch's ``parsed()`` waits for the parse."""
        source = self.source
        already: set[int] = set()
        if uidvalidity is not None:
            already = await self._db(self.store.recorded_uids, self.name, uidvalidity, chunk)
            if already and not source.keeps_processed:
                async with self._io:
                    await source.dispose(sorted(already), Disposal.PROCESSED)
                log.info("mailbox.disposed_recorded", mailbox=self.name, count=len(already),
                         uids=sorted(already)[:20], why="committed earlier, not yet moved")
        todo = [k for k in chunk if k not in already]
        messages: list[FetchedMessage] = []
        if todo:
            async with self._io:
                messages = await source.fetch(todo)
        loop = asyncio.get_running_loop()
        parsing = loop.run_in_executor(
            self.runtime.executor,
            lambda: self.pipeline.prepare_batch(self.name, self.box, uidvalidity, messages, self.runtime.halt),
        )
        self.totals["already"] += len(already)
        return _InFlight(chunk, uidvalidity, BatchOutcome(), None, parsing)

    def _start_commit(self, batch: _InFlight) -> _InFlight:
        loop = asyncio.get_running_loop()
        read_only = getattr(self.source, "read_only", False)
        batch.commit = loop.run_in_executor(
            self.runtime.executor,
            lambda: self.pipeline.commit_batch(self.name, self.box, batch.outcome, read_only=read_only),
        )
        return batch

    async def _finish(self, batch: _InFlight) -> int:
        """Wait for a batch's commit, then move its messages and advance the position."""
        assert batch.commit is not None
        await batch.commit
        source, outcome = self.source, batch.outcome
        processed_keys = outcome.keys(Disposal.PROCESSED)
        quarantine_keys = outcome.keys(Disposal.QUARANTINE)
        # counted once committed, before the move: a move that fails leaves the messages in the
        # folder, but they are recorded (the next pass moves them as already known)
        for _, result in outcome.processed:
            self.totals["duplicate" if result.duplicate else "processed"] += 1
        self.totals["quarantined"] += len(outcome.quarantined)
        self.totals["already"] += len(outcome.already)
        async with self._io:
            if processed_keys:
                await source.dispose(processed_keys, Disposal.PROCESSED)
            if quarantine_keys:
                await source.dispose(quarantine_keys, Disposal.QUARANTINE)
        if batch.uidvalidity is not None and not outcome.store_error:
            position = await self._db(self.store.get_mailbox_state, self.name)
            stored = position.last_uid if position is not None and position.uidvalidity == batch.uidvalidity else 0
            top = batch.top(stored)
            if top > stored:
                await self._db(self.store.set_mailbox_state, self.name, batch.uidvalidity, top)
        if outcome.store_error:
            raise StoreError(outcome.store_error)
        return len(batch.chunk) - len(outcome.left)

    # ----------------------------------------------------------------- failures

    @property
    def failures(self) -> int:
        """Failures in a row (0 after a pass that worked)."""
        return self.backoff.failures

    async def _failed(self, exc: Exception) -> float:
        delay = self.backoff.failed()
        if not isinstance(exc, LeaseLost | StoreError):
            await self._record_error(exc)
        if isinstance(exc, StoreError):
            # the mailbox connection is fine: keep it; and look for the database again soon (a
            # cheap query), so that work resumes within seconds of its return
            delay = min(delay, STORE_RETRY_MAX_SECONDS)
        else:
            await self.source.abort()
        if isinstance(exc, SourceError):
            metrics.IMAP_ERRORS.labels(self.name).inc()
            log.warning("mailbox.source_error", mailbox=self.name, error=str(exc), failures=self.failures,
                        retry_in=round(delay, 2), configuration_problem=not exc.transient)
        elif isinstance(exc, StoreError):
            log.error("mailbox.store_error", mailbox=self.name, error=str(exc), failures=self.failures,
                      retry_in=round(delay, 2), messages="left in place")
        elif isinstance(exc, LeaseLost):
            log.warning("mailbox.lease_lost", mailbox=self.name, why=exc.why,
                        action="stopped working it until this daemon holds its lease again")
        else:
            log.error("mailbox.unexpected_error", mailbox=self.name, error=f"{type(exc).__name__}: {exc}",
                      traceback=plain_traceback(exc), retry_in=round(delay, 2))
        return delay

    async def _wait_for_mail(self, seconds: float) -> bool:
        """IDLE (or a pause) that also ends when this daemon hands the mailbox to another
        (``wake``, set by processor.daemon.sharing)."""
        wake = asyncio.Event()
        self.wake = wake
        stopping = asyncio.ensure_future(self.runtime.stop.wait())
        stopping.add_done_callback(lambda _: wake.set())
        try:
            return await self.source.wait_for_mail(seconds, wake)
        finally:
            stopping.cancel()
            self.wake = None

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the daemon stops or the worker is resumed."""
        stopping = asyncio.ensure_future(self.runtime.stop.wait())
        woken = asyncio.ensure_future(self._resumed.wait())
        try:
            await asyncio.wait({stopping, woken}, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            woken.cancel()
            self._resumed.clear()

    # ----------------------------------------------------------------- entry points

    async def cycle(self, budget: float) -> None:
        """One scheduled run (the daemon's job): drain, then with IDLE wait for new mail and drain
        again until ``budget`` seconds have passed. Failures back off (exponential, jitter)."""
        loop = asyncio.get_running_loop()
        runtime = self.runtime
        if runtime.stop.is_set() or loop.time() < self.retry_at:
            return
        if not runtime.holds(self.name):
            await self.source.close()
            return
        deadline = loop.time() + budget
        self.task = asyncio.current_task()
        try:
            while not runtime.stop.is_set():
                try:
                    await self.drain()
                    self.backoff.succeeded()
                    if not self.source.can_push or runtime.stop.is_set():
                        return
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return
                    if not await self._wait_for_mail(remaining) or not runtime.holds(self.name):
                        return
                except LeaseLost as exc:  # the lease refresh resumes it (``resume``)
                    self.retry_at = loop.time() + await self._failed(exc)
                    return
                except (SourceError, StoreError) as exc:
                    delay = await self._failed(exc)
                    if loop.time() + delay >= deadline:
                        self._retry_later(delay)
                        return
                    await self._pause(delay)
                except Exception as exc:
                    self._retry_later(await self._failed(exc))
                    return
        finally:
            self.task = None

    def _retry_later(self, delay: float) -> None:
        """Retry after ``delay`` (the backoff), not at the next poll: a server that answers again
        is used again within the backoff, however long the poll interval."""
        self.retry_at = asyncio.get_running_loop().time() + delay
        self.runtime.rerun(self.name, delay)

    def resume(self) -> None:
        """Forget the retry time and end a backoff pause: the cause of the failure is gone (the
        lease is held again, so the database answers)."""
        self.retry_at = 0.0
        self._resumed.set()

    async def run_once(self, attempts: int = 6) -> bool:
        """``run --once``: drain the source once (retrying failures with backoff); True on success."""
        runtime = self.runtime
        self.task = asyncio.current_task()
        try:
            for attempt in range(1, attempts + 1):
                try:
                    await self.drain()
                    return True
                except (SourceError, StoreError) as exc:
                    delay = await self._failed(exc)
                    permanent = isinstance(exc, SourceError) and not exc.transient
                    if attempt == attempts or permanent or runtime.stop.is_set():
                        log.error("mailbox.gave_up", mailbox=self.name, error=str(exc), attempts=attempt)
                        return False
                    await self._pause(delay)
                except LeaseLost as exc:
                    log.warning("mailbox.lease_lost", mailbox=self.name, why=exc.why)
                    return True
                except Exception as exc:
                    await self._failed(exc)
                    return False
            return False
        finally:
            self.task = None
            await self.source.close()
