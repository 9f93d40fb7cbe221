"""The per-message pipeline of ``bounce-processor run``, for one mailbox at a time.

    fetch -> parse -> classify -> store (ledger + events + suppressions: ONE transaction)
          -> dispose (move to Processed / Quarantine, only AFTER the commit)

``Pipeline`` is the synchronous middle (parse, classify, the return-path guard, the store); it
runs in a worker thread so that neither parsing nor the database ever blocks IMAP. ``MailboxWorker``
is the asynchronous edge around one ``MailSource``: it reads the source in batches, hands each batch
to the pipeline, disposes of what was committed, and keeps the source's position (UIDVALIDITY and
last UID) in the store.

Nothing is lost and nothing counted twice:

- A batch's messages are committed together (``Store.record_messages``: all or none). A failed
  commit leaves every message where it was; the worker backs off and tries again.
- Messages are disposed of only after the commit. If the move fails, the messages stay in the
  folder and are in the ledger: the next pass finds them there by UID and only moves them.
- A message that cannot be parsed, or whose processing raises, is recorded as failed (with the
  error) and moved to the quarantine folder; it is never deleted.
- A UIDVALIDITY change makes the worker read the folder from the start: the ledger's content hash
  recognises every message it has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import structlog

from processor import metrics
from processor.backoff import Backoff
from processor.classify import Classifier
from processor.config import MailboxSettings, Settings
from processor.parse import ParseError, Parser
from processor.records import Action, BounceType, EventKind, Verdict
from processor.sources.base import Disposal, FetchedMessage, MailSource, SourceError
from processor.store import MessageRef, RecordResult, Store, StoreError
from processor.verp import verify_return_path

__all__ = ["BatchOutcome", "LeaseLost", "MailboxWorker", "Pipeline", "Prepared", "Runtime"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

_SUPPRESSING_TYPES = (BounceType.HARD, BounceType.SOFT, BounceType.COMPLAINT)
_BOUNCE_KINDS = (EventKind.FAILURE, EventKind.DELAY)


class LeaseLost(Exception):
    """Another daemon works this mailbox now (PostgreSQL lease lost)."""


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True, slots=True)
class Prepared:
    """One message after parse and classify: ready to store, or (``error``) to quarantine."""

    message: FetchedMessage
    ref: MessageRef
    verdicts: tuple[Verdict, ...] = ()
    held: tuple[str, ...] = ()
    """Why verdicts were kept from suppressing (return path not verified, wrong mailbox kind)."""
    error: str = ""


@dataclass(slots=True)
class BatchOutcome:
    """What happened to a batch: committed, quarantined, already in the ledger, or left alone."""

    prepared: list[Prepared] = field(default_factory=list)
    """Parsed and classified, to be committed (or, with ``error``, quarantined)."""
    processed: list[tuple[Prepared, RecordResult]] = field(default_factory=list)
    quarantined: list[Prepared] = field(default_factory=list)
    already: list[FetchedMessage] = field(default_factory=list)
    """In the ledger already (file sources: by content hash): only disposed of."""
    left: list[FetchedMessage] = field(default_factory=list)
    """Not handled (stop requested, or the database failed): left where they are."""
    store_error: str = ""

    def keys(self, disposal: Disposal) -> list[int]:
        if disposal is Disposal.QUARANTINE:
            return [p.message.key for p in self.quarantined]
        return [p.message.key for p, _ in self.processed] + [msg.key for msg in self.already]


def _may_suppress(verdict: Verdict) -> bool:
    if verdict.action is not None:
        return verdict.action in (Action.SUPPRESS, Action.COUNT)
    return verdict.bounce_type in _SUPPRESSING_TYPES


def _plain_traceback(exc: BaseException) -> str:
    """A traceback without local variables (a rich traceback would print them, secrets included)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))


class Pipeline:
    """parse -> classify -> guard -> store, for batches of one mailbox. Thread-safe."""

    def __init__(self, settings: Settings, store: Store, classifier: Classifier) -> None:
        self.settings = settings
        self.store = store
        self.classifier = classifier
        self.parser = Parser(settings.parse)
        self._secrets = settings.verp.all_secrets()
        self._max_age = settings.verp.max_age_days

    # ----------------------------------------------------------------- per message

    def _return_path_problem(self, verdict: Verdict) -> str:
        """"" when the report's return path is signed for its recipient, else why not."""
        event = verdict.event
        candidates = [a for a in (event.bounce_address, event.original.return_path) if a]
        if not candidates:
            return "no return path to verify"
        problems = []
        wanted = event.recipient.strip().lower()
        for address in candidates:
            result = verify_return_path(address, secrets=self._secrets, max_age_days=self._max_age)
            if result.valid:
                if result.recipient.strip().lower() == wanted:
                    return ""
                problems.append(f"{address} is signed for {result.recipient}, not {event.recipient or 'this report'}")
            else:
                problems.append(f"{address}: {result.reason}")
        return "return path not verified: " + "; ".join(problems)

    def guard(self, box: MailboxSettings, verdicts: Sequence[Verdict]) -> tuple[list[Verdict], list[str]]:
        """Keep verdicts from suppressing when the mailbox's kind or its return-path requirement
        says so: they are still recorded (action IGNORE), and the reason is returned for the log."""
        out: list[Verdict] = []
        held: list[str] = []
        for given in verdicts:
            verdict = given
            why = ""
            if _may_suppress(verdict):
                kind = verdict.event.kind
                if box.kind == "bounce" and kind is EventKind.COMPLAINT:
                    why = "a complaint in a bounce mailbox (kind = bounce)"
                elif box.kind == "fbl" and kind in _BOUNCE_KINDS:
                    why = "a bounce in a feedback-loop mailbox (kind = fbl)"
                elif box.require_signed_return_path:
                    why = self._return_path_problem(verdict)
            if why:
                held.append(f"{verdict.event.recipient or '?'}: {why}")
                verdict = replace(verdict, action=Action.IGNORE)
            out.append(verdict)
        return out, held

    def prepare(self, name: str, box: MailboxSettings, uidvalidity: int | None, message: FetchedMessage) -> Prepared:
        ref = MessageRef.for_bytes(message.data, name, uidvalidity, message.uid, message.received_at)
        try:
            events = self.parser.parse(message.data)
        except ParseError as exc:
            return Prepared(message, ref, error=f"cannot parse: {exc}")
        except Exception as exc:
            log.error("message.parser_raised", mailbox=name, uid=message.uid, source=message.label,
                      error=f"{type(exc).__name__}: {exc}", traceback=_plain_traceback(exc))
            return Prepared(message, ref, error=f"the parser raised {type(exc).__name__}: {exc}")
        try:
            verdicts, held = self.guard(box, [self.classifier.classify(event) for event in events])
        except Exception as exc:
            log.error("message.classifier_raised", mailbox=name, uid=message.uid, source=message.label,
                      error=f"{type(exc).__name__}: {exc}", traceback=_plain_traceback(exc))
            return Prepared(message, ref, error=f"classification raised {type(exc).__name__}: {exc}")
        return Prepared(message, ref, tuple(verdicts), tuple(held))

    # ----------------------------------------------------------------- per batch

    def prepare_batch(
        self,
        name: str,
        box: MailboxSettings,
        uidvalidity: int | None,
        messages: Sequence[FetchedMessage],
        halt: threading.Event,
    ) -> BatchOutcome:
        """Parse and classify a batch (no writes). Stops between messages once ``halt`` is set:
        the rest is left for the next run."""
        outcome = BatchOutcome()
        todo = list(messages)
        if uidvalidity is None and todo:  # no UIDs: the ledger knows these files by content
            hashes = {msg.key: hashlib.sha256(msg.data).hexdigest() for msg in todo}
            known = self.store.recorded_hashes(list(hashes.values()))
            outcome.already = [msg for msg in todo if hashes[msg.key] in known]
            todo = [msg for msg in todo if hashes[msg.key] not in known]
        for index, message in enumerate(todo):
            if halt.is_set():
                outcome.left.extend(todo[index:])
                break
            outcome.prepared.append(self.prepare(name, box, uidvalidity, message))
        return outcome

    def commit_batch(self, name: str, box: MailboxSettings, outcome: BatchOutcome, *, read_only: bool = False) -> None:
        """Commit a prepared batch (one transaction) and record its failures, filling ``outcome``.
        A database failure leaves the messages not yet recorded in ``outcome.left``."""
        prepared = outcome.prepared
        good = [p for p in prepared if not p.error]
        failed = [p for p in prepared if p.error]
        try:
            committed = self._commit(good, failed)
        except StoreError as exc:
            outcome.store_error = str(exc)
            outcome.left.extend(p.message for p in prepared)
            metrics.MESSAGES_PROCESSED.labels(name, "failed").inc(len(prepared))
            return
        outcome.processed = committed
        for item in failed:
            if read_only and self.store.failed_hashes([item.ref.content_hash]):
                outcome.quarantined.append(item)
                continue
            try:
                self.store.record_failed(item.ref, item.error)
            except StoreError as exc:
                outcome.store_error = str(exc)
                outcome.left.append(item.message)
                metrics.MESSAGES_PROCESSED.labels(name, "failed").inc()
                continue
            outcome.quarantined.append(item)
            metrics.MESSAGES_PROCESSED.labels(name, "quarantined").inc()
            log.warning("message.quarantined", mailbox=name, uid=item.message.uid, source=item.message.label,
                        error=item.error, to=box.quarantine_folder if not read_only else "(left in place)")
        for item, result in committed:
            self._account(name, item, result)

    def run_batch(
        self,
        name: str,
        box: MailboxSettings,
        uidvalidity: int | None,
        messages: Sequence[FetchedMessage],
        halt: threading.Event,
        *,
        read_only: bool = False,
    ) -> BatchOutcome:
        """``prepare_batch`` then ``commit_batch``, in one call."""
        outcome = self.prepare_batch(name, box, uidvalidity, messages, halt)
        self.commit_batch(name, box, outcome, read_only=read_only)
        return outcome

    def _commit(self, good: list[Prepared], failed: list[Prepared]) -> list[tuple[Prepared, RecordResult]]:
        """Commit the batch in one transaction; if the store raises something other than a
        database failure, commit one by one so that only the offending message is quarantined."""
        if not good:
            return []
        try:
            results = self.store.record_messages([(p.ref, list(p.verdicts)) for p in good])
            return list(zip(good, results, strict=True))
        except StoreError:
            raise
        except Exception:
            pass
        committed = []
        for item in good:
            try:
                committed.append((item, self.store.record_message(item.ref, list(item.verdicts))))
            except StoreError:
                raise
            except Exception as exc:
                log.error("message.store_raised", mailbox=item.ref.mailbox, uid=item.message.uid,
                          error=f"{type(exc).__name__}: {exc}", traceback=_plain_traceback(exc))
                failed.append(replace(item, error=f"storing raised {type(exc).__name__}: {exc}"))
        return committed

    def _account(self, name: str, item: Prepared, result: RecordResult) -> None:
        """The log line and the metrics of one committed message."""
        message = item.message
        if result.duplicate:
            metrics.MESSAGES_PROCESSED.labels(name, "duplicate").inc()
            log.info("message.duplicate", mailbox=name, uid=message.uid, source=message.label,
                     ledger=result.message_ref, message_id=_message_id(item.verdicts))
            return
        metrics.MESSAGES_PROCESSED.labels(name, "processed").inc()
        for decision in result.decisions:
            verdict = decision.verdict
            metrics.EVENTS.labels(str(verdict.bounce_type), verdict.reason).inc()
            if decision.action is Action.SUPPRESS:
                metrics.SUPPRESSIONS.labels(decision.source or "bounce", "add").inc()
        fields: dict[str, Any] = {
            "mailbox": name,
            "uid": message.uid,
            "message_id": _message_id(item.verdicts),
            "events": len(result.decisions),
            "recipients": [d.address or d.verdict.event.recipient for d in result.decisions],
            "bounce_types": [str(d.verdict.bounce_type) for d in result.decisions],
            "reasons": [d.verdict.reason for d in result.decisions],
            "rule_ids": [d.verdict.rule_id for d in result.decisions],
            "decisions": [str(d.action) for d in result.decisions],
        }
        if message.uid is None:
            fields["source"] = message.label
        if item.held:
            fields["held"] = list(item.held)
            log.warning("message.processed", **fields)
        else:
            log.info("message.processed", **fields)


def _message_id(verdicts: Sequence[Verdict]) -> str:
    for verdict in verdicts:
        if verdict.event.original.message_id:
            return verdict.event.original.message_id
    return ""


# --------------------------------------------------------------------------- the worker


@dataclass
class _InFlight:
    """A batch between parse and disposal: its keys, its outcome, its commit (a future)."""

    chunk: Sequence[int]
    uidvalidity: int | None
    outcome: BatchOutcome
    commit: asyncio.Future[None] | None

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
        self.task: asyncio.Task[Any] | None = None
        self.totals = {"processed": 0, "duplicate": 0, "quarantined": 0, "already": 0}

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
        size = self.box.batch_size
        in_flight: _InFlight | None = None
        try:
            for start in range(0, len(keys), size):
                if runtime.stop.is_set():
                    break
                if not runtime.holds(self.name):
                    raise LeaseLost(self.name)
                chunk = keys[start : start + size]
                prepared = await self._prepare(chunk, uidvalidity)
                if in_flight is not None:  # the previous batch's commit ran while this one was parsed
                    current, in_flight = in_flight, None
                    handled += await self._finish(current)
                in_flight = self._start_commit(prepared)
        finally:
            if in_flight is not None:
                current, in_flight = in_flight, None
                handled += await self._finish(current)
        if keys:
            log.info("mailbox.drained", mailbox=self.name, candidates=len(keys), handled=handled,
                     **{k: v - before[k] for k, v in self.totals.items()})
        return handled

    async def _prepare(self, chunk: Sequence[int], uidvalidity: int | None) -> _InFlight:
        """Dispose of what the ledger knows already, fetch the rest and parse it (no writes)."""
        source = self.source
        already: set[int] = set()
        if uidvalidity is not None:
            already = await self._db(self.store.recorded_uids, self.name, uidvalidity, chunk)
            if already and not source.keeps_processed:
                await source.dispose(sorted(already), Disposal.PROCESSED)
                log.info("mailbox.disposed_recorded", mailbox=self.name, count=len(already),
                         uids=sorted(already)[:20], why="committed earlier, not yet moved")
        todo = [k for k in chunk if k not in already]
        messages = await source.fetch(todo) if todo else []
        outcome = await self._db(self.pipeline.prepare_batch, self.name, self.box, uidvalidity, messages,
                                 self.runtime.halt)
        self.totals["already"] += len(already)
        return _InFlight(chunk, uidvalidity, outcome, None)

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
        if processed_keys:
            await source.dispose(processed_keys, Disposal.PROCESSED)
        quarantine_keys = outcome.keys(Disposal.QUARANTINE)
        if quarantine_keys:
            await source.dispose(quarantine_keys, Disposal.QUARANTINE)
        for _, result in outcome.processed:
            self.totals["duplicate" if result.duplicate else "processed"] += 1
        self.totals["quarantined"] += len(outcome.quarantined)
        self.totals["already"] += len(outcome.already)
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
        await self.source.abort()
        if isinstance(exc, SourceError):
            metrics.IMAP_ERRORS.labels(self.name).inc()
            log.warning("mailbox.source_error", mailbox=self.name, error=str(exc), failures=self.failures,
                        retry_in=round(delay, 2), configuration_problem=not exc.transient)
        elif isinstance(exc, StoreError):
            log.error("mailbox.store_error", mailbox=self.name, error=str(exc), failures=self.failures,
                      retry_in=round(delay, 2), messages="left in place")
        elif isinstance(exc, LeaseLost):
            log.warning("mailbox.lease_lost", mailbox=self.name, action="another daemon works it now")
        else:
            log.error("mailbox.unexpected_error", mailbox=self.name, error=f"{type(exc).__name__}: {exc}",
                      traceback=_plain_traceback(exc), retry_in=round(delay, 2))
        return delay

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runtime.stop.wait(), timeout=max(0.0, seconds))

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
                    if not await self.source.wait_for_mail(remaining, runtime.stop):
                        return
                except (SourceError, StoreError, LeaseLost) as exc:
                    delay = await self._failed(exc)
                    if isinstance(exc, LeaseLost) or loop.time() + delay >= deadline:
                        self.retry_at = loop.time() + delay
                        return
                    await self._pause(delay)
                except Exception as exc:
                    self.retry_at = loop.time() + await self._failed(exc)
                    return
        finally:
            self.task = None

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
                except LeaseLost:
                    log.warning("mailbox.lease_lost", mailbox=self.name)
                    return True
                except Exception as exc:
                    await self._failed(exc)
                    return False
            return False
        finally:
            self.task = None
            await self.source.close()
