"""``bounce-processor run [--once]``: the daemon that reads the configured mailboxes.

With no mailbox configured, the embedded default reads the project's samples/ directory
read-only (so that ``python3 -m processor run --once`` works on a fresh machine, into the default
SQLite file); the ledger keeps a second run from counting anything twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from processor.commands import CommandError, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="read the bounce and feedback-loop mailboxes and process what arrives (the daemon)",
        description="Read the configured mailboxes (IMAP, Maildir, directories), classify every report, "
        "update the suppression list, and file each message away once its result is committed. "
        "SIGTERM/SIGINT stop it cleanly; SIGHUP reloads the rules.",
    )
    p.add_argument("--once", action="store_true",
                   help="read every mailbox once, then exit (exit 1 if a mailbox could not be read)")
    p.set_defaults(handler=run)


def extra_services(settings: Any) -> list[Any]:
    """Services started inside ``bounce-processor run`` beside the mailboxes (not with ``--once``),
    each an ``async def service(settings, stop: asyncio.Event) -> None`` that returns soon after
    ``stop`` is set (processor.daemon.ExtraService): the HTTP API when ``[api] enabled``."""
    services: list[Any] = []
    if settings.api.enabled:
        from processor.api.server import api_service

        services.append(api_service)
    return services


def _exit_now_if_threads_hang(code: int, before: set[threading.Thread]) -> None:
    """A worker thread stuck in a database call must not keep the process alive after shutdown.
    Only threads the run started count (``before``: those alive when it began), so that a caller
    that runs the command in its own process (a test) is never ended by a thread of its own."""
    import time

    deadline = time.monotonic() + 1.0
    stuck = [t for t in threading.enumerate()
             if t is not threading.main_thread() and t not in before and t.is_alive() and not t.daemon]
    for thread in stuck:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in stuck):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from processor.config import ConfigError

    threads_before = set(threading.enumerate())
    settings = settings_from(args)
    # the parse pool's workers start now, before this process imports the daemon, the store and
    # SQLAlchemy: each worker's start-up (imports, the parser) overlaps those imports
    pool = _start_parse_pool(settings)
    try:
        from processor.commands import _run_report
        from processor.daemon import Daemon, DaemonError

        report = _run_report.RunReport(verbose=_debug()) if _run_report.wanted(args) else None
        try:
            daemon = Daemon(settings, once=args.once, services=[] if args.once else extra_services(settings),
                            parse_pool=pool)
            _freeze_start_up()
            if report is None:
                code = asyncio.run(daemon.run())
            else:
                with report:
                    code = asyncio.run(daemon.run())
        except (DaemonError, ConfigError) as exc:
            raise CommandError(str(exc), exit_code=1) from None
    finally:
        if pool is not None:  # the daemon closes it; not if it never ran
            pool.close()
    if report is not None:
        print(report.summary(settings, getattr(args, "config", None), _new_entries(settings, report)))
    _exit_now_if_threads_hang(code, threads_before)
    return code


def _freeze_start_up() -> None:
    """Take what start-up made (the imports, the settings: ~86,000 objects, 96% of what the daemon
    holds once it runs) out of the garbage collector's sight for the life of the process: a full
    collection then walks only what the work made since. Each one was ~50 ms, ~10 us of CPU a
    message on a drain (of ~200 in the daemon's process), and full collections come from the work
    the daemon does, not from start-up. Hardly any of it is garbage (a collection here finds ~15
    objects); what becomes garbage later is still freed as its last reference goes, only a
    reference cycle among it would stay.

    And the youngest generation is collected every 10,000 allocations, not 700: a drain allocates
    and frees much (rows, events, log lines), most of it freed by its count before any collection;
    the ~250 collections of a 10,000-message drain (~230 young) became 8, and the collector's time
    after start-up fell from ~9 to ~4 us a message. In the command's process only: a test that runs a Daemon in
    its own process keeps its collector as it was."""
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _start_parse_pool(settings: Any) -> Any:
    """The daemon's parse pool, its workers starting (None when it parses in-thread)."""
    processes = settings.daemon.parse_processes
    if processes == 1:
        return None
    from processor.daemon.parallel import ParsePool

    pool = ParsePool(settings.parse, processes, start_method=pool_start_method())
    pool.warm()
    return pool


def pool_start_method() -> str:
    """How the parse pool's workers start: forked while this process has no other thread yet (the
    command's start: no database or mailbox is open either, so a worker inherits only the imports
    and the settings), else spawned (a caller's threads would be copied half-way)."""
    import multiprocessing

    alone = all(t is threading.main_thread() for t in threading.enumerate())
    return "fork" if alone and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _debug() -> bool:
    from processor import logs

    return logs.current()[1] == "DEBUG"


def _new_entries(settings: Any, report: Any) -> Any:
    """Active entries first seen since the run started, by reason (None if the store cannot say)."""
    from collections import Counter

    from processor.store import EntryFilter, StoreError, open_store

    try:
        store = open_store(settings, migrate=False)
    except StoreError:
        return None
    try:
        return Counter(entry.reason for entry in store.iter_entries(EntryFilter(since=report.started_at)))
    except StoreError:
        return None
    finally:
        store.close()
