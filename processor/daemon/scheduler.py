"""The daemon's life cycle: sources, APScheduler jobs, signals, leases, shutdown.

``Daemon(settings).run()`` is ``bounce-processor run``; ``Daemon(settings, once=True).run()`` is
``run --once``. The per-message work lives in processor.daemon.pipeline and .mailbox_worker; this module only decides
when it runs:

- one APScheduler job per mailbox folder (``max_instances=1``, coalesced), every
  ``poll_interval_seconds``; with IDLE a run stays in IDLE until just before the next one, so new
  mail is handled within seconds and IDLE is re-issued at least every interval;
- ``purge``: expired suppressions deleted (``Store.purge_expired``);
- ``housekeeping``: rule files reloaded when they change, the active-suppressions gauge refreshed;
- ``leases`` (PostgreSQL): mailboxes of a dead daemon taken over;
- ``quarantine``: quarantined messages an operator asked to process again (processor.daemon.requeue),
  every ``housekeeping_interval_seconds``, for the mailboxes this daemon holds;
- SIGTERM/SIGINT: finish the message in hand, start no new one, log out, exit 0 within
  ``shutdown_seconds``; SIGHUP: reload the rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from processor import metrics
from processor.backoff import Backoff
from processor.config import MailboxSettings, Settings, embedded_mailboxes
from processor.daemon.lease import Leases, LocalLeases, make_leases
from processor.daemon.mailbox_worker import MailboxWorker, Runtime
from processor.daemon.parallel import ParsePool
from processor.daemon.pipeline import Pipeline
from processor.daemon.requeue import reprocess_requested
from processor.daemon.sharing import hand_back_surplus
from processor.sources.base import MailSource

__all__ = ["Daemon", "DaemonError", "ExtraService", "build_sources", "effective_mailboxes"]

log = structlog.get_logger(__name__)

LEASE_RETRY_SECONDS = 1.0
"""While the database is away, how often the leases try to reach it (to resume within seconds)."""

ExtraService = Callable[[Settings, asyncio.Event], Awaitable[None]]
"""A service started inside ``bounce-processor run`` beside the mailboxes (the HTTP API): it gets
the settings and the daemon's stop event and must return soon after the event is set."""


class DaemonError(Exception):
    """The daemon cannot start (configuration, rules, database); the message says why."""


def effective_mailboxes(settings: Settings) -> dict[str, MailboxSettings]:
    """The configured mailboxes; with none, the embedded default (samples/, read-only)."""
    if settings.mailboxes:
        return {name: box for name, box in settings.mailboxes.items() if box.enabled}
    if settings.daemon.embedded_default:
        return embedded_mailboxes()
    return {}


def build_sources(mailboxes: dict[str, MailboxSettings]) -> list[tuple[MailSource, MailboxSettings]]:
    """One source per IMAP folder, Maildir or directory."""
    from processor.sources.imap import ImapSource
    from processor.sources.local import DirectorySource, MaildirSource

    sources: list[tuple[MailSource, MailboxSettings]] = []
    for name, box in mailboxes.items():
        if box.source == "imap":
            for folder in box.folders:
                sources.append((ImapSource(f"{name}/{folder}", folder, box), box))
        elif box.source == "maildir":
            sources.append((MaildirSource(name, box), box))
        else:
            sources.append((DirectorySource(name, box), box))
    return sources


class Daemon:
    """``bounce-processor run [--once]`` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        once: bool = False,
        services: Sequence[ExtraService] = (),
        sources: list[tuple[MailSource, MailboxSettings]] | None = None,
        parse_pool: ParsePool | None = None,
    ) -> None:
        """``parse_pool``: a pool already started (its workers warming up) for the daemon to use
        and close; by default the daemon starts one (``daemon.parse_processes``) in ``run``."""
        self.settings = settings
        self.once = once
        self.services = list(services)
        self.mailboxes = effective_mailboxes(settings)
        self._given_sources = sources
        self.stop = asyncio.Event()
        self.halt = threading.Event()
        self.executor = ThreadPoolExecutor(
            max_workers=settings.daemon.workers + 1, thread_name_prefix="bounce-worker"
        )
        self.workers: list[MailboxWorker] = []
        self.leases: Leases | None = None
        self.parse_pool: ParsePool | None = parse_pool
        self.store: Any = None
        self._sender: Any = None
        self.classifier: Any = None
        self.scheduler: Any = None
        self._service_tasks: list[asyncio.Task[None]] = []
        self._reloading: asyncio.Task[None] | None = None
        self.pipeline: Pipeline | None = None
        from processor.store.passes import daemon_identity

        self.identity = daemon_identity()
        """How the store names this daemon as a mailbox's lease holder (``host:pid``)."""

    # ----------------------------------------------------------------- start-up

    def _check(self) -> None:
        if not self.mailboxes and self._given_sources is None:
            if self.settings.mailboxes or not self.settings.daemon.embedded_default:
                raise DaemonError("no enabled mailbox is configured (and daemon.embedded_default is off)")
            raise DaemonError(
                "no mailbox is configured (the built-in demo reads the samples/ of a source checkout, "
                "which this installation does not have): `bounce-processor init DIR` writes a "
                "configuration to start from; pass it with --config or $BOUNCE_PROCESSOR_CONFIG"
            )
        needs_secret = [n for n, b in self.mailboxes.items() if b.require_signed_return_path]
        if needs_secret and not self.settings.verp.all_secrets():
            raise DaemonError(
                f"mailbox(es) {', '.join(needs_secret)} require signed return paths, but no verp.secrets is configured"
            )

    def _load(self) -> None:
        from processor.classify import RulesError, load_classifier

        try:
            self.classifier = load_classifier(self.settings.rules)
        except RulesError as exc:
            raise DaemonError(str(exc)) from None

    def _warm_rules(self) -> None:
        """The pool's workers compile the rules now, while the database and the mailboxes open,
        rather than in the first batch (the pipeline ships the same rules: same digest, compiled once)."""
        from processor.classify import CompiledRules
        from processor.daemon.parallel import ship_rules

        compiled = getattr(self.classifier, "compiled", None)
        if self.parse_pool is not None and isinstance(compiled, CompiledRules):
            lowercase = self.settings.database.lowercase_local_part
            self.parse_pool.warm(ship_rules(compiled, lowercase_local=lowercase))

    def _open_store(self) -> Any:
        from processor.store import open_store

        return open_store(self.settings)

    async def _store_with_retry(self) -> Any:
        """The store; the daemon waits for an unreachable database (``--once`` does not)."""
        from processor.store import StoreError

        loop = asyncio.get_running_loop()
        retry = Backoff(initial=1.0, maximum=60.0)
        while True:
            try:
                return await loop.run_in_executor(self.executor, self._open_store)
            except StoreError as exc:
                if self.once or self.stop.is_set():
                    raise DaemonError(f"cannot open the database: {exc}") from None
                delay = retry.failed()
                log.error("daemon.database_unavailable", error=str(exc), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    raise DaemonError(f"stopped while waiting for the database: {exc}") from None

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        if not self.once:
            loop.add_signal_handler(signal.SIGHUP, self._sighup)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    def request_stop(self, why: str = "stop requested") -> None:
        """Finish the messages in hand, start nothing new, then exit."""
        if not self.stop.is_set():
            log.info("daemon.stopping", signal=why)
        self.stop.set()
        self.halt.set()

    def _sighup(self) -> None:
        log.info("daemon.sighup", action="reloading the rules")
        self._reload_rules()

    def _reload_rules(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            return
        loop = asyncio.get_running_loop()

        async def reload() -> None:
            problems = await loop.run_in_executor(self.executor, self.classifier.reload)
            if problems:
                log.error("daemon.rules_kept", problems=len(problems), why="the new rules are invalid")

        self._reloading = asyncio.ensure_future(reload())

    # ----------------------------------------------------------------- jobs

    async def _housekeeping(self) -> None:
        if self.classifier.changed():
            log.info("daemon.rules_changed", action="reloading the rules")
            self._reload_rules()
        await self._refresh_gauge()

    async def _refresh_gauge(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            metrics.ACTIVE_SUPPRESSIONS.set(await loop.run_in_executor(self.executor, self.store.count_active))
        except Exception as exc:
            log.warning("daemon.gauge_failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    async def _purge(self) -> None:
        from processor.store import StoreError

        loop = asyncio.get_running_loop()
        try:
            count = await loop.run_in_executor(self.executor, self.store.purge_expired)
        except StoreError as exc:
            log.error("daemon.purge_failed", error=str(exc))
            return
        log.info("daemon.purged", expired=count)

    async def _deliver_outbox(self) -> None:
        from processor.delivery import OutboxSender

        if self._sender is None:
            self._sender = OutboxSender(self.store)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self._sender.run_once)
        except Exception as exc:
            log.error("daemon.outbox_failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    async def _reprocess_quarantined(self) -> None:
        from processor.store import StoreError

        assert self.pipeline is not None and self.leases is not None
        loop = asyncio.get_running_loop()
        boxes = {w.name: w.box for w in self.workers}
        pipeline, holds = self.pipeline, self.leases.holds
        try:
            await loop.run_in_executor(self.executor, lambda: reprocess_requested(
                self.store, pipeline, boxes=boxes, holds=holds, identity=self.identity, halt=self.halt))
        except StoreError as exc:
            log.error("quarantine.reprocess_store_error", error=str(exc), action="tried again at the next run")

    async def _release_holder(self, names: list[str]) -> None:
        """These leases were given back: this daemon no longer names itself their holder."""
        if not names:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self.store.release_holder, names, self.identity)
        except Exception as exc:
            log.warning("daemon.holder_not_cleared", mailboxes=names, error=f"{type(exc).__name__}: {exc}")

    async def _refresh_leases(self) -> None:
        assert self.leases is not None
        taken = await self.leases.refresh([w.name for w in self.workers])
        await self._release_holder(await hand_back_surplus(self.leases, self.workers, self.stop))
        if self.scheduler is None:
            return
        workers = {w.name: w for w in self.workers}
        for name in taken:  # run the mailbox now, whatever its backoff or its interval
            workers[name].resume()
            self._run_mailbox_in(name, 0.0)
        if self.leases.reconnecting:  # the database is away: notice its return within a second
            job = self.scheduler.get_job("leases")
            if job is not None:
                job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=LEASE_RETRY_SECONDS))

    def _run_mailbox_in(self, name: str, seconds: float) -> None:
        """Move the mailbox's next run to ``seconds`` from now, if that is sooner."""
        if self.scheduler is None or self.stop.is_set():
            return
        job = self.scheduler.get_job(f"mailbox:{name}")
        if job is None:
            return
        when = datetime.now(UTC) + timedelta(seconds=seconds)
        if job.next_run_time is None or when < job.next_run_time:
            job.modify(next_run_time=when)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        now = datetime.now(UTC)
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        for worker in self.workers:
            interval = worker.box.poll_interval_seconds
            budget = max(0.1, interval - min(1.0, interval * 0.2))
            scheduler.add_job(worker.cycle, "interval", seconds=interval, args=[budget], id=f"mailbox:{worker.name}",
                              name=f"mailbox {worker.name}", next_run_time=now, **common)
        daemon = self.settings.daemon
        scheduler.add_job(self._purge, "interval", seconds=daemon.purge_interval_seconds, id="purge",
                          name="purge expired suppressions", next_run_time=now + timedelta(seconds=5), **common)
        scheduler.add_job(self._housekeeping, "interval", seconds=daemon.housekeeping_interval_seconds,
                          id="housekeeping", name="reload changed rules, refresh gauges",
                          next_run_time=now + timedelta(seconds=1), **common)
        if self.leases is not None and not isinstance(self.leases, LocalLeases):
            scheduler.add_job(self._refresh_leases, "interval", seconds=max(1.0, daemon.lease_seconds / 3),
                              id="leases", name="take over mailboxes of stopped daemons", **common)
        scheduler.add_job(self._reprocess_quarantined, "interval", seconds=daemon.housekeeping_interval_seconds,
                          id="quarantine", name="process again the quarantined messages asked for",
                          next_run_time=now + timedelta(seconds=1), **common)
        if self.settings.outbox.endpoints:
            scheduler.add_job(self._deliver_outbox, "interval", seconds=self.settings.outbox.interval_seconds,
                              id="outbox", name="post suppression-changed events", **common)
        scheduler.start()
        self.scheduler = scheduler
        for job in scheduler.get_jobs():
            log.info("scheduler.job", id=job.id, job=job.name, trigger=str(job.trigger),
                     next_run=job.next_run_time.isoformat() if job.next_run_time else None)

    # ----------------------------------------------------------------- run

    async def run(self) -> int:
        """Run until stopped (or, with ``once``, until every mailbox was read once). 0 when every
        mailbox was read without error (``once``) or the daemon stopped cleanly."""
        import logging

        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self._check()
        self._install_signals()
        processes = self.settings.daemon.parse_processes
        if processes != 1 and self.parse_pool is None:
            # started first: its workers start up while the rules load and the database opens
            self.parse_pool = ParsePool(self.settings.parse, processes)
            self.parse_pool.warm()
        try:
            self._load()
            self._warm_rules()
            self.store = await self._store_with_retry()
            try:
                return await self._run_with_store()
            finally:
                await self._close()
        finally:
            self._remove_signals()
            if self.parse_pool is not None:  # the rules or the database failed: _close did not run
                self.parse_pool.close()

    async def _run_with_store(self) -> int:
        from processor.config import is_loopback_host

        pipeline = Pipeline(self.settings, self.store, self.classifier, self.parse_pool)
        self.pipeline = pipeline
        self.leases = make_leases(self.settings.database.url, self.settings.daemon.lease_seconds, self.executor)
        leases = self.leases
        runtime = Runtime(self.executor, self.stop, self.halt, leases.holds, leases.problem, self._run_mailbox_in,
                          identity=self.identity)
        sources = self._given_sources if self._given_sources is not None else build_sources(self.mailboxes)
        self.workers = [MailboxWorker(source, box, pipeline, self.store, runtime) for source, box in sources]
        for _, box in sources:
            if box.source == "imap" and not box.tls_verify:
                log.warning("daemon.tls_not_verified", host=box.host,
                            why="tls_verify = false: any certificate is accepted")
            if box.source == "imap" and box.tls == "none" and not is_loopback_host(box.host):
                raise DaemonError(f"plain IMAP to {box.host} is not allowed (loopback only)")
        log.info("daemon.started", once=self.once, identity=self.identity, mailboxes=[w.name for w in self.workers],
                 database=self.store.engine.dialect.name, rules=len(self.classifier.rules),
                 embedded_default=not self.settings.mailboxes and self._given_sources is None)
        await leases.refresh([w.name for w in self.workers])
        if self.once:
            return await self._run_once()
        for service in self.services:
            self._service_tasks.append(asyncio.ensure_future(self._guard_service(service)))
        self._start_scheduler()
        await self.stop.wait()
        await self._drain_shutdown()
        return 0

    async def _guard_service(self, service: ExtraService) -> None:
        name = getattr(service, "__qualname__", repr(service))
        try:
            await service(self.settings, self.stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("daemon.service_failed", service=name, error=f"{type(exc).__name__}: {exc}")

    async def _run_once(self) -> int:
        assert self.leases is not None
        skipped = [w.name for w in self.workers if not self.leases.holds(w.name)]
        for name in skipped:
            log.info("mailbox.skipped", mailbox=name, why="another daemon works it")
        results = await asyncio.gather(*(w.run_once() for w in self.workers if self.leases.holds(w.name)))
        if not self.stop.is_set():
            await self._reprocess_quarantined()
        if not self.stop.is_set():
            await self._purge()
        if not self.stop.is_set() and self.settings.outbox.endpoints:
            await self._deliver_outbox()  # one pass: what is due now; the next run retries the rest
        failed = [w.name for w, ok in zip([w for w in self.workers if self.leases.holds(w.name)], results,
                                          strict=True) if not ok]
        totals = {key: sum(w.totals[key] for w in self.workers) for key in ("processed", "duplicate",
                                                                              "quarantined", "already")}
        log.info("daemon.once_done", failed=failed, **totals)
        return 1 if failed else 0

    async def _drain_shutdown(self) -> None:
        """Stop scheduling, let running jobs finish their message (bounded), log out. The
        scheduler is shut down only after its jobs returned: its shutdown cancels running jobs,
        which it would log as errors although nothing went wrong."""
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.pause()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.daemon.shutdown_seconds
        running = [w.task for w in self.workers if w.task is not None and not w.task.done()]
        running += [t for t in self._service_tasks if not t.done()]
        if running:
            _, pending = await asyncio.wait(running, timeout=max(0.1, deadline - loop.time() - 1.5))
            for task in pending:
                task.cancel()
            if pending:
                log.warning("daemon.jobs_cancelled", count=len(pending), why="shutdown time exceeded")
                await asyncio.wait(pending, timeout=0.5)
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.shutdown(wait=False)

    async def _close(self) -> None:
        closing = [asyncio.ensure_future(w.source.close()) for w in self.workers]
        if closing:
            await asyncio.wait(closing, timeout=1.5)
        if self.store is not None and self.workers:  # every lease is given back below
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._release_holder([w.name for w in self.workers]), 1.0)
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.leases.close(), 1.0)
        loop = asyncio.get_running_loop()
        if self.store is not None:
            closer = loop.run_in_executor(self.executor, self.store.close)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer, 1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.parse_pool is not None:
            await loop.run_in_executor(None, self.parse_pool.close)
        log.info("daemon.stopped")

