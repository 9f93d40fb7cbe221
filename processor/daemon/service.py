"""The per-message pipeline of ``bounce-processor run``, for one mailbox at a time.

    fetch -> parse -> classify -> store (ledger + events + suppressions: ONE transaction)
          -> dispose (move to Processed / Quarantine, only AFTER the commit)

The steps, and the module holding each:

    fetch      MailSource.fetch                           processor.sources (the MailSource seam)
    parse      Pipeline.prepare -> Parser.parse           processor.daemon.pipeline, processor.parse
    classify   Pipeline.prepare -> Classifier.classify    processor.classify
    guard      Pipeline.guard (mailbox kind, signed VERP) processor.daemon.pipeline
    policy     decide(), called by Store.record_messages  processor.decide (in the store's transaction)
    store      Pipeline.commit_batch                      processor.store.recording
    dispose    MailboxWorker._finish -> MailSource.dispose processor.daemon.mailbox_worker

``Pipeline`` (processor.daemon.pipeline) is the synchronous middle; it runs in a worker thread so
that neither parsing nor the database ever blocks IMAP. ``MailboxWorker``
(processor.daemon.mailbox_worker) is the asynchronous edge around one ``MailSource``: it reads the
source in batches, hands each batch to the pipeline, disposes of what was committed, and keeps the
source's position (UIDVALIDITY and last UID) in the store. This module names them together.

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

from processor.daemon.mailbox_worker import LeaseLost, MailboxWorker, Runtime
from processor.daemon.pipeline import BatchOutcome, Pipeline, Prepared

__all__ = ["BatchOutcome", "LeaseLost", "MailboxWorker", "Pipeline", "Prepared", "Runtime"]
