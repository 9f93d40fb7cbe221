"""Quarantined messages processed again, on an operator's request (the console's "process again",
recorded by ``processor.store.quarantine``).

A small scheduler job (and one look at the end of ``run --once``): the daemon takes the requests
for the mailboxes whose leases it holds, runs each kept copy through the same pipeline as new mail
(``Pipeline.reprocess``: parse, classify, guard, policy, store) and records the outcome: out of
the quarantine, or back in it with the new error. The ledger keeps a message that was meanwhile
processed some other way from counting twice (it comes back as a duplicate: out of the quarantine).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import structlog

from processor.config import MailboxSettings
from processor.daemon.pipeline import Pipeline
from processor.sources.base import FetchedMessage
from processor.store import Store

__all__ = ["reprocess_requested"]

log = structlog.get_logger("processor.daemon.service")


def reprocess_requested(
    store: Store,
    pipeline: Pipeline,
    *,
    boxes: Mapping[str, MailboxSettings],
    holds: Callable[[str], bool],
    identity: str,
    halt: threading.Event,
    limit: int = 50,
) -> int:
    """Process the requested messages of the mailboxes this daemon holds (up to ``limit``; the
    rest at the next run); returns how many were handled. Runs in a worker thread."""
    names = [name for name in boxes if holds(name)]
    actor = f"daemon:{identity}"
    done = 0
    for request in store.requested_messages(names, limit):
        if halt.is_set():
            break
        data = request.data
        if data is None or len(data) != request.size:
            error = "the message was not kept whole: move it from the quarantine folder back into the mailbox"
            store.finish_reprocess(request.id, actor=actor, error=error)
            log.warning("quarantine.reprocess_failed", mailbox=request.mailbox, failed_id=request.id, error=error)
            done += 1
            continue
        message = FetchedMessage(request.id, request.uid, data, request.recorded_at, f"quarantined #{request.id}")
        result, error = pipeline.reprocess(request.mailbox, boxes[request.mailbox], request.uidvalidity, message)
        store.finish_reprocess(request.id, actor=actor, error=error,
                               message_ref=result.message_ref if result is not None else None)
        if error:
            log.warning("quarantine.reprocess_failed", mailbox=request.mailbox, failed_id=request.id, error=error)
        else:
            assert result is not None
            log.info("quarantine.reprocessed", mailbox=request.mailbox, failed_id=request.id,
                     ledger=result.message_ref, duplicate=result.duplicate, events=len(result.decisions))
        done += 1
    return done
