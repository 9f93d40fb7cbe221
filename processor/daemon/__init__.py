"""``bounce-processor run``: the long-running service that reads the bounce and feedback-loop
mailboxes and runs every message through parse, classify, policy and store.

    from processor.daemon import Daemon
    exit_code = asyncio.run(Daemon(settings, once=True).run())

processor.daemon.service names the per-message pipeline's steps: processor.daemon.pipeline (``Pipeline``)
and processor.daemon.mailbox_worker (``MailboxWorker``);
processor.daemon.scheduler the life cycle (jobs, signals, shutdown), processor.daemon.lease the
PostgreSQL mailbox leases.
"""

from __future__ import annotations

from processor.daemon.scheduler import Daemon, DaemonError, ExtraService, build_sources, effective_mailboxes

__all__ = ["Daemon", "DaemonError", "ExtraService", "build_sources", "effective_mailboxes"]
