"""``bounce-processor run``: the long-running service that reads the bounce and feedback-loop
mailboxes and runs every message through parse, classify, policy and store.

    from processor.daemon import Daemon
    exit_code = asyncio.run(Daemon(settings, once=True).run())

processor.daemon.service names the per-message pipeline's steps: processor.daemon.pipeline (``Pipeline``)
and processor.daemon.mailbox_worker (``MailboxWorker``);
processor.daemon.scheduler the life cycle (jobs, signals, shutdown), processor.daemon.lease the
PostgreSQL mailbox leases.

The names are imported on first use: the parse pool's workers import processor.daemon.parallel,
and must not pay for the scheduler, the store and SQLAlchemy they never use (a spawned worker
started in about a second less).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processor.daemon.scheduler import Daemon, DaemonError, ExtraService, build_sources, effective_mailboxes

__all__ = ["Daemon", "DaemonError", "ExtraService", "build_sources", "effective_mailboxes"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from processor.daemon import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
