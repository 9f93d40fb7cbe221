"""The synchronous middle of the daemon's pipeline, for one batch of one mailbox at a time:

    parse -> classify -> guard (mailbox kind, signed return path) -> policy + store

``Pipeline`` runs in a worker thread so that neither parsing nor the database ever blocks IMAP.
The policy step (``processor.decide``) runs inside ``Store.record_messages``: it decides from the
address's history read under the address's lock, in the message's one transaction. The asynchronous
edge around it (fetching, the dispose step, the mailbox position) is
``processor.daemon.mailbox_worker``.
"""

from __future__ import annotations

import hashlib
import threading
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from processor import metrics
from processor.classify import Classifier, CompiledRules
from processor.config import MailboxSettings, Settings
from processor.daemon.parallel import Classified, ClassifyFailed, ParseOutcome, ParsePool, ShippedRules, ship_rules
from processor.records import Action, BounceType, EventKind, Verdict
from processor.sources.base import Disposal, FetchedMessage
from processor.store import MessageRef, RecordResult, Store, StoreError
from processor.verp import verify_return_path

if TYPE_CHECKING:
    from processor.parse import Parser

__all__ = ["BatchOutcome", "Pipeline", "Prepared", "plain_traceback"]

log = structlog.get_logger("processor.daemon.service")

_SUPPRESSING_TYPES = (BounceType.HARD, BounceType.SOFT, BounceType.COMPLAINT)
_BOUNCE_KINDS = (EventKind.FAILURE, EventKind.DELAY)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One message after parse and classify: ready to store, or (``error``) to quarantine."""

    message: FetchedMessage
    ref: MessageRef
    verdicts: tuple[Verdict, ...] = ()
    held: tuple[str, ...] = ()
    """Why verdicts were kept from suppressing (return path not verified, wrong mailbox kind)."""
    error: str = ""
    addresses: tuple[tuple[str, str], ...] | None = None
    """Per verdict, its recipient normalised by the parse pool (the address, or "" and why not);
    None: the store normalises."""


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


def plain_traceback(exc: BaseException) -> str:
    """A traceback without local variables (a rich traceback would print them, secrets included)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))


class Pipeline:
    """parse -> classify -> guard -> store, for batches of one mailbox. Thread-safe."""

    def __init__(
        self, settings: Settings, store: Store, classifier: Classifier, parse_pool: ParsePool | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.classifier = classifier
        self._parser: Parser | None = None
        self.parse_pool = parse_pool
        """Parses batches on all cores (processor.daemon.parallel); None: in the calling thread."""
        self._shipped: tuple[CompiledRules, ShippedRules] | None = None
        """The rules as last shipped to the pool, with the compiled rules they were made from."""
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

    @property
    def parser(self) -> Parser:
        """The parser for messages parsed here (no pool, a one-message batch, process-again), built
        on first use: with a pool, this process need not import the parser at all."""
        if self._parser is None:
            from processor.parse import Parser

            self._parser = Parser(self.settings.parse)
        return self._parser

    def _rules_for_pool(self) -> ShippedRules | None:
        """The classifier's current rules for the pool's workers (pickled again only after a
        reload), or None when the classifier is not a rule set (then the daemon classifies)."""
        compiled = getattr(self.classifier, "compiled", None)
        if not isinstance(compiled, CompiledRules):
            return None
        shipped = self._shipped
        if shipped is None or shipped[0] is not compiled:
            shipped = (compiled, ship_rules(compiled, lowercase_local=self.store.database.lowercase_local))
            self._shipped = shipped
        return shipped[1]

    def prepare(
        self,
        name: str,
        box: MailboxSettings,
        uidvalidity: int | None,
        message: FetchedMessage,
        parsed: ParseOutcome | None = None,
    ) -> Prepared:
        """Parse and classify (unless the pool did: ``parsed`` holds the events, the verdicts or
        the error text), then guard."""
        ref = MessageRef.for_bytes(message.data, name, uidvalidity, message.uid, message.received_at)
        if isinstance(parsed, Classified):
            verdicts, held = self.guard(box, parsed.verdicts)
            addresses = tuple(parsed.addresses) if parsed.addresses is not None else None
            return Prepared(message, ref, tuple(verdicts), tuple(held), addresses=addresses)
        if isinstance(parsed, ClassifyFailed):
            log.error("message.classifier_raised", mailbox=name, uid=message.uid, source=message.label,
                      error=parsed.error, traceback=parsed.traceback)
            return Prepared(message, ref, error=f"classification raised {parsed.error}")
        try:
            if isinstance(parsed, str):
                if not parsed.startswith("cannot parse"):
                    log.error("message.parser_raised", mailbox=name, uid=message.uid, source=message.label,
                              error=parsed)
                return Prepared(message, ref, error=parsed)
            events = self.parser.parse(message.data) if parsed is None else parsed
        except Exception as exc:
            from processor.parse import ParseError

            if isinstance(exc, ParseError):
                return Prepared(message, ref, error=f"cannot parse: {exc}")
            log.error("message.parser_raised", mailbox=name, uid=message.uid, source=message.label,
                      error=f"{type(exc).__name__}: {exc}", traceback=plain_traceback(exc))
            return Prepared(message, ref, error=f"the parser raised {type(exc).__name__}: {exc}")
        try:
            verdicts, held = self.guard(box, [self.classifier.classify(event) for event in events])
        except Exception as exc:
            log.error("message.classifier_raised", mailbox=name, uid=message.uid, source=message.label,
                      error=f"{type(exc).__name__}: {exc}", traceback=plain_traceback(exc))
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
        if self.parse_pool is not None and len(todo) > 1 and not halt.is_set():
            parsed = self.parse_pool.submit([message.data for message in todo], self._rules_for_pool()).result()
            outcome.prepared.extend(
                self.prepare(name, box, uidvalidity, message, outcome_of)
                for message, outcome_of in zip(todo, parsed, strict=True)
            )
            return outcome
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
        self._account(name, committed)

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

    def reprocess(
        self, name: str, box: MailboxSettings, uidvalidity: int | None, message: FetchedMessage
    ) -> tuple[RecordResult | None, str]:
        """A quarantined message once more through parse, classify, guard, policy and store (its
        own transaction; the mailbox's position stays where it is): (the result, "") or (None, the
        error). A database failure raises StoreError (the request stays for the next try)."""
        prepared = self.prepare(name, box, uidvalidity, message)
        if prepared.error:
            return None, prepared.error
        result, error = self._store_one(prepared, advance_mailbox=False)
        if result is not None:
            self._account(name, [(prepared, result)])
        return result, error

    def _store_one(self, item: Prepared, *, advance_mailbox: bool = True) -> tuple[RecordResult | None, str]:
        """One message in its own transaction: (the result, "") or, when the store raises something
        other than a database failure (StoreError, which propagates), (None, the error)."""
        try:
            return self.store.record_message(item.ref, list(item.verdicts), advance_mailbox=advance_mailbox,
                                             addresses=item.addresses), ""
        except StoreError:
            raise
        except Exception as exc:
            log.error("message.store_raised", mailbox=item.ref.mailbox, uid=item.message.uid, source=item.message.label,
                      error=f"{type(exc).__name__}: {exc}", traceback=plain_traceback(exc))
            return None, f"storing raised {type(exc).__name__}: {exc}"

    def _commit(self, good: list[Prepared], failed: list[Prepared]) -> list[tuple[Prepared, RecordResult]]:
        """Commit the batch in one transaction; if the store raises something other than a
        database failure, commit one by one so that only the offending message is quarantined."""
        if not good:
            return []
        try:
            results = self.store.record_messages([(p.ref, list(p.verdicts)) for p in good],
                                                 addresses=[p.addresses for p in good])
            return list(zip(good, results, strict=True))
        except StoreError:
            raise
        except Exception:
            pass
        committed = []
        for item in good:
            result, error = self._store_one(item)
            if result is not None:
                committed.append((item, result))
            else:
                failed.append(replace(item, error=error))
        return committed

    def _account(self, name: str, committed: Sequence[tuple[Prepared, RecordResult]]) -> None:
        """The log line of each committed message, then the metrics of them all: each counter is
        incremented once by its total (a ``labels()`` look-up per message and per event was ~2.5 us
        of a message's CPU)."""
        outcomes: Counter[str] = Counter()
        events: Counter[tuple[str, str]] = Counter()
        added: Counter[str] = Counter()
        for item, result in committed:
            message = item.message
            if result.duplicate:
                outcomes["duplicate"] += 1
                log.info("message.duplicate", mailbox=name, uid=message.uid, source=message.label,
                         ledger=result.message_ref, message_id=_message_id(item.verdicts))
                continue
            outcomes["processed"] += 1
            for decision in result.decisions:
                verdict = decision.verdict
                events[(str(verdict.bounce_type), verdict.reason)] += 1
                if decision.action is Action.SUPPRESS:
                    added[decision.source or "bounce"] += 1
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
        for outcome, count in outcomes.items():
            metrics.MESSAGES_PROCESSED.labels(name, outcome).inc(count)
        for (bounce_type, reason), count in events.items():
            metrics.EVENTS.labels(bounce_type, reason).inc(count)
        for source, count in added.items():
            metrics.SUPPRESSIONS.labels(source, "add").inc(count)


def _message_id(verdicts: Sequence[Verdict]) -> str:
    for verdict in verdicts:
        if verdict.event.original.message_id:
            return verdict.event.original.message_id
    return ""
