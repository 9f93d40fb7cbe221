"""The per-message pipeline with real parse, rules and store (SQLite), on in-memory and file
sources: commit before disposal, quarantine, retries, UIDVALIDITY, return-path guard, shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from processor.classify import load_classifier
from processor.config import DatabaseSettings, MailboxSettings, Settings, VerpSettings
from processor.daemon import Daemon
from processor.daemon.mailbox_worker import FETCH_AHEAD, FIRST_BATCH, LeaseLost, batch_plan
from processor.daemon.service import MailboxWorker, Pipeline, Runtime
from processor.records import Event, Verdict
from processor.sources.base import SourceError
from processor.sources.local import DirectorySource, MaildirSource
from processor.store import Store, StoreError, open_store
from processor.store import models as m
from processor.verp import make_return_path
from tests.conftest import SAMPLES
from tests.daemon.helpers import bounce_for, bounces
from tests.daemon.memory_source import MemorySource

SECRET = "daemon-test-secret-0123456789"


def settings_for(url: str, **extra: Any) -> Settings:
    return Settings(database=DatabaseSettings(url=url, busy_timeout_ms=300), **extra)


def box(**overrides: Any) -> MailboxSettings:
    values: dict[str, Any] = {"source": "directory", "path": Path("/nonexistent"), "batch_size": 10,
                              "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05}
    values.update(overrides)
    return MailboxSettings(**values)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    opened = open_store(settings_for(sqlite_url))
    yield opened
    opened.close()


class Harness:
    """A worker over a source, with the real pipeline, and counts from the database."""

    def __init__(self, store: Store, source: Any, mailbox: MailboxSettings | None = None,
                 settings: Settings | None = None, classifier: Any = None) -> None:
        self.store = store
        self.settings = settings or store.settings
        self.pipeline = Pipeline(self.settings, store, classifier or load_classifier(self.settings.rules))
        self.runtime = Runtime(ThreadPoolExecutor(2), asyncio.Event(), threading.Event())
        self.worker = MailboxWorker(source, mailbox or box(), self.pipeline, store, self.runtime)

    def drain(self) -> int:
        return asyncio.run(self.worker.drain())

    def count(self, table: sa.Table, *where: Any) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())

    def events(self) -> int:
        return self.count(m.event, m.event.c.message_ref.is_not(None))

    def ledger(self) -> int:
        return self.count(m.processed_message)


def test_batch_is_committed_then_moved(store: Store) -> None:
    """Every message of a batch is recorded with its events and suppression, then moved out."""
    source = MemorySource()
    for data in bounces(12):
        source.append(data)
    h = Harness(store, source)
    assert h.drain() == 12
    assert h.ledger() == 12 and h.events() == 12
    assert not source.inbox and len(source.folders["processed"]) == 12
    assert store.is_suppressed("gone7@local.example.net") is not None
    position = store.get_mailbox_state(source.name)
    assert position is not None and position.last_uid == 12


def test_failed_commit_leaves_every_message_in_place(store: Store, sqlite_url: str) -> None:
    """A database that refuses the write leaves the messages where they were, nothing recorded."""
    source = MemorySource()
    for data in bounces(5):
        source.append(data)
    h = Harness(store, source)
    locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError):
            h.drain()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert len(source.inbox) == 5 and not source.folders["processed"]
    assert h.ledger() == 0 and h.events() == 0
    assert h.drain() == 5
    assert h.ledger() == 5 and not source.inbox


def test_failed_move_after_commit_is_retried_without_counting_again(store: Store) -> None:
    """When the move fails after the commit, the next pass only moves: events are not doubled."""
    source = MemorySource()
    for data in bounces(6):
        source.append(data)
    source.fail_dispose = SourceError("connection lost during MOVE")
    h = Harness(store, source)
    with pytest.raises(SourceError):
        h.drain()
    assert h.ledger() == 6 and len(source.inbox) == 6
    source.fail_dispose = None
    fetched_before = len(source.fetched)
    h.drain()
    assert not source.inbox and len(source.folders["processed"]) == 6
    assert h.ledger() == 6 and h.events() == 6
    assert len(source.fetched) == fetched_before  # recognised by UID, not fetched again


def test_unparseable_message_is_quarantined_and_recorded(store: Store) -> None:
    """A message the parser cannot read goes to quarantine with its error recorded, not deleted."""
    source = MemorySource()
    source.append(b"\r\n\r\n")
    source.append(bounce_for("fine@local.example.net"))
    h = Harness(store, source)
    h.drain()
    assert source.folders["quarantine"] == [b"\r\n\r\n"]
    assert len(source.folders["processed"]) == 1
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.failed_message.c.status, m.failed_message.c.error)).all()
    assert [(r.status, r.error) for r in rows] == [("quarantined", "cannot parse: empty message")]
    assert h.ledger() == 1


class RaisingClassifier:
    """The real rules, except that classifying one recipient raises (a bug in a rule)."""

    def __init__(self, settings: Settings, poison: str) -> None:
        self.rules = load_classifier(settings.rules)
        self.poison = poison

    def classify(self, event: Event) -> Verdict:
        if event.recipient == self.poison:
            raise RuntimeError("rule engine bug")
        return self.rules.classify(event)


def test_message_whose_processing_raises_is_quarantined(store: Store) -> None:
    """An exception while classifying one message quarantines that message only."""
    source = MemorySource()
    source.append(bounce_for("poison@local.example.net"))
    source.append(bounce_for("fine@local.example.net"))
    h = Harness(store, source, classifier=RaisingClassifier(store.settings, "poison@local.example.net"))
    h.drain()
    assert len(source.folders["quarantine"]) == 1 and b"poison@" in source.folders["quarantine"][0]
    assert len(source.folders["processed"]) == 1
    with store.engine.connect() as conn:
        errors = conn.execute(sa.select(m.failed_message.c.error)).scalars().all()
    assert errors == ["classification raised RuntimeError: rule engine bug"]


def test_uidvalidity_change_rescans_without_counting_twice(store: Store) -> None:
    """A new UIDVALIDITY makes the worker read the folder again; the ledger skips what it knows."""
    source = MemorySource(keep_processed=True)
    for data in bounces(4):
        source.append(data)
    h = Harness(store, source, box(processed="keep"))
    h.drain()
    assert h.events() == 4 and len(source.inbox) == 4
    h.drain()
    assert len(source.fetched) == 4  # UIDs at or below the stored last UID are not fetched again
    source.renumber(uidvalidity=99)
    source.append(bounce_for("new@local.example.net"))
    h.drain()
    assert len(source.fetched) == 9
    assert h.events() == 5 and h.ledger() == 5
    position = store.get_mailbox_state(source.name)
    assert position is not None and (position.uidvalidity, position.last_uid) == (99, 5)


def _signed_bounce(recipient: str, signed_for: str | None, secret: str = SECRET) -> bytes:
    data = bounce_for(recipient)
    if signed_for is None:
        return data
    path = make_return_path(signed_for, secret=secret, sender_domain="sender.example")
    return data.replace(b"bounces@sender.example", path.encode())


@pytest.mark.parametrize(
    ("signed_for", "secret", "suppressed", "why"),
    [
        ("alice@local.example.net", SECRET, True, ""),
        ("mallory@local.example.net", SECRET, False, "is signed for mallory@local.example.net"),
        ("alice@local.example.net", "another-secret-0123456789", False, "signature does not match"),
        (None, SECRET, False, "not a signed return path"),
    ],
)
def test_required_signed_return_path(
    sqlite_url: str, *, signed_for: str | None, secret: str, suppressed: bool, why: str, log_output: io.StringIO
) -> None:
    """With require_signed_return_path, only a report signed for its own recipient suppresses; the
    others are recorded (decision ignore) and the reason is logged."""
    settings = settings_for(sqlite_url, verp=VerpSettings(secrets=[SecretStr(SECRET)]))
    store = open_store(settings)
    try:
        source = MemorySource()
        source.append(_signed_bounce("alice@local.example.net", signed_for, secret))
        h = Harness(store, source, box(require_signed_return_path=True), settings=settings)
        h.drain()
        assert (store.is_suppressed("alice@local.example.net") is not None) is suppressed
        history = store.history("alice@local.example.net")
        assert [e.decision for e in history] == ["suppress" if suppressed else "ignore"]
        if why:
            assert why in log_output.getvalue()
    finally:
        store.close()


def test_complaint_in_a_bounce_mailbox_does_not_suppress(store: Store) -> None:
    """kind = "bounce": an ARF complaint arriving there is recorded but does not suppress."""
    source = MemorySource()
    source.append((SAMPLES / "handwritten/arf-abuse.eml").read_bytes())
    h = Harness(store, source, box(kind="bounce"))
    h.drain()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.event.c.kind, m.event.c.decision, m.event.c.address)).all()
    assert [(r.kind, r.decision) for r in rows] == [("complaint", "ignore")]
    assert store.is_suppressed(rows[0].address) is None


def test_stop_finishes_the_message_in_hand_and_leaves_the_rest(store: Store) -> None:
    """Once a stop is requested mid-batch, the messages already parsed are committed and moved;
    the others stay in the mailbox for the next run."""
    source = MemorySource()
    for data in bounces(6):
        source.append(data)
    h = Harness(store, source)

    class StopOnThird(RaisingClassifier):
        def classify(self, event: Event) -> Verdict:
            if event.recipient == "gone2@local.example.net":
                h.runtime.halt.set()
            return self.rules.classify(event)

    h.pipeline.classifier = StopOnThird(store.settings, "")
    h.drain()
    assert h.ledger() == 3 and len(source.folders["processed"]) == 3
    assert sorted(source.inbox) == [4, 5, 6]
    position = store.get_mailbox_state(source.name)
    assert position is not None and position.last_uid == 3


def test_one_broken_mailbox_does_not_stop_the_others(sqlite_url: str) -> None:
    """run --once: a mailbox that cannot be opened fails alone; the others are processed."""
    settings = settings_for(sqlite_url)
    broken = MemorySource("broken/INBOX")
    broken.fail_open = SourceError("connection refused")
    good = MemorySource("good/INBOX")
    for data in bounces(3):
        good.append(data)
    daemon = Daemon(settings, once=True, sources=[(broken, box()), (good, box())])
    assert asyncio.run(daemon.run()) == 1
    assert not good.inbox and len(good.folders["processed"]) == 3
    assert broken.opened >= 2  # retried with backoff before giving up


def test_daemon_mode_processes_pushed_mail_and_stops_cleanly(sqlite_url: str) -> None:
    """In daemon mode a source that pushes (like IDLE) has new mail processed within moments,
    and a stop request ends the run with 0 after logging out."""
    settings = settings_for(sqlite_url)
    source = MemorySource("push/INBOX")

    async def scenario() -> tuple[int, float]:
        daemon = Daemon(settings, sources=[(source, box(poll_interval_seconds=30))])
        task = asyncio.ensure_future(daemon.run())
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        source.append(bounce_for("pushed@local.example.net"))
        while source.inbox and loop.time() - start < 10:
            await asyncio.sleep(0.02)
        latency = loop.time() - start
        daemon.request_stop("test")
        return await asyncio.wait_for(task, 10), latency

    code, latency = asyncio.run(scenario())
    assert code == 0
    assert not source.inbox and latency < 2.0
    assert source.closed >= 1


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_directory_is_never_changed_and_never_counted_twice(store: Store, tmp_path: Path) -> None:
    """A read-only directory source leaves its files as they are; a second pass counts nothing."""
    directory = tmp_path / "samples"
    shutil.copytree(SAMPLES / "generated/postfix", directory)
    (directory / "broken.eml").write_bytes(b"\r\n")
    before = _tree_digest(directory)
    mailbox = box(path=directory, read_only=True, processed="keep")
    h = Harness(store, DirectorySource("dir", mailbox), mailbox)
    h.drain()
    first = h.ledger()
    assert first == len(before) - 1
    h.drain()
    assert h.ledger() == first and _tree_digest(directory) == before
    assert h.count(m.failed_message) == 1  # the broken file is recorded once, not once per pass


def _maildir(root: Path, messages: list[bytes]) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for n, data in enumerate(messages):
        (root / "new" / f"{n}.host").write_bytes(data)
    return root


@pytest.mark.parametrize("processed", ["folder", "seen", "delete"])
def test_maildir_dispositions(store: Store, tmp_path: Path, processed: str) -> None:
    """A Maildir's processed messages go to .Processed, get the S flag, or are deleted; an
    unparseable one goes to .Quarantine."""
    root = _maildir(tmp_path / "Maildir", [*bounces(3), b"\r\n"])
    mailbox = box(source="maildir", path=root, processed=processed)
    h = Harness(store, MaildirSource("md", mailbox), mailbox)
    h.drain()
    assert h.ledger() == 3
    assert len(list((root / ".Quarantine" / "cur").iterdir())) == 1
    assert not list((root / "new").iterdir())
    if processed == "folder":
        assert len(list((root / ".Processed" / "cur").iterdir())) == 3
    elif processed == "seen":
        assert sorted(p.name.rpartition(":2,")[2] for p in (root / "cur").iterdir()) == ["S", "S", "S"]
        h.drain()  # flagged messages are not read again
        assert h.ledger() == 3 and h.count(m.processed_message) == 3
    else:
        assert not list((root / "cur").iterdir())


def test_backoff_grows_exponentially_with_jitter_up_to_the_ceiling(store: Store) -> None:
    """Each failure doubles the delay (with jitter between half and all of it) up to the maximum."""
    h = Harness(store, MemorySource(), box(backoff_initial_seconds=1.0, backoff_max_seconds=8.0))
    worker = h.worker
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        worker.backoff.failures = failures
        delays = [worker.backoff.delay() for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not constant


def test_metrics_count_messages_events_and_suppressions(store: Store) -> None:
    """The Prometheus counters move with what the daemon does, per mailbox and outcome."""
    from processor import metrics

    def value(counter: Any, **labels: str) -> float:
        return float(counter.labels(**labels)._value.get())

    source = MemorySource("metrics/INBOX")
    for data in bounces(3, prefix="metric"):
        source.append(data)
    source.append(b"\r\n")
    before = (value(metrics.MESSAGES_PROCESSED, mailbox=source.name, outcome="processed"),
              value(metrics.MESSAGES_PROCESSED, mailbox=source.name, outcome="quarantined"),
              value(metrics.SUPPRESSIONS, source="bounce", action="add"))
    Harness(store, source).drain()
    after = (value(metrics.MESSAGES_PROCESSED, mailbox=source.name, outcome="processed"),
             value(metrics.MESSAGES_PROCESSED, mailbox=source.name, outcome="quarantined"),
             value(metrics.SUPPRESSIONS, source="bounce", action="add"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 1, 3]


def test_signed_return_paths_need_a_secret(sqlite_url: str) -> None:
    """A mailbox requiring signed return paths without any verp secret stops the start, clearly."""
    from processor.daemon import DaemonError

    daemon = Daemon(settings_for(sqlite_url, mailboxes={"b": box(require_signed_return_path=True)}), once=True)
    with pytest.raises(DaemonError, match=r"require signed return paths, but no verp\.secrets"):
        asyncio.run(daemon.run())


@pytest.mark.parametrize(("count", "size"), [(0, 250), (1, 250), (63, 250), (64, 250), (100, 50), (500, 250),
                                             (3000, 250), (10_000, 250), (10_000, 400), (7, 3), (1000, 1)])
def test_batch_plan_covers_every_message_once_within_the_batch_size(count: int, size: int) -> None:
    plan = batch_plan(count, size)
    assert sum(plan) == count
    assert all(0 < n <= size for n in plan)


def test_batch_plan_starts_and_ends_small_on_a_long_pass() -> None:
    """A long pass starts with FIRST_BATCH messages and doubles up to the batch size (the parse
    pool starts on the first 32 messages fetched), and ends the same way in reverse."""
    assert batch_plan(3000, 250) == [32, 64, 128] + [250] * 10 + [52] + [128, 64, 32]
    assert batch_plan(100, 250) == [32, 36, 32]
    assert batch_plan(10, 250) == [10]  # a short pass (mail that just arrived): one batch
    assert batch_plan(7, 3) == [3, 3, 1]  # batch_size below FIRST_BATCH: batches as configured
    assert FIRST_BATCH == 32


class BatchRecorder(MemorySource):
    """Records each fetch's size, and whether each disposed message was in the ledger by then."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.batches: list[int] = []
        self.disposed_uncommitted: list[int] = []

    async def fetch(self, keys: Any) -> Any:
        self.batches.append(len(keys))
        return await super().fetch(keys)

    async def dispose(self, keys: Any, disposal: Any) -> None:
        recorded = self.store.recorded_uids(self.name, self.uidvalidity, list(keys))
        self.disposed_uncommitted.extend(k for k in keys if k not in recorded)
        await super().dispose(keys, disposal)


def test_a_long_pass_is_read_in_growing_then_shrinking_batches_each_moved_after_its_commit(store: Store) -> None:
    source = BatchRecorder(store)
    for data in bounces(100):
        source.append(data)
    h = Harness(store, source, box(batch_size=50))
    assert h.drain() == 100
    assert source.batches == [32, 36, 32]
    assert h.ledger() == 100 and not source.inbox and len(source.folders["processed"]) == 100
    assert source.disposed_uncommitted == []
    position = store.get_mailbox_state(source.name)
    assert position is not None and position.last_uid == 100


class FetchLog(MemorySource):
    """Records every fetch; ``enough`` is set once 2 + FETCH_AHEAD batches were fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches: list[list[int]] = []
        self.enough = threading.Event()

    async def fetch(self, keys: Any) -> Any:
        self.fetches.append(list(keys))
        if len(self.fetches) == 2 + FETCH_AHEAD:
            self.enough.set()
        return await super().fetch(keys)


def test_batches_are_fetched_and_parsed_ahead_while_a_commit_waits_and_no_further(store: Store) -> None:
    """The parse pool is fed while the database commits: while the first batch's commit waits, the
    next FETCH_AHEAD + 1 batches are fetched (one parsed and waiting for that commit, FETCH_AHEAD
    parsing or queued for the parse), and not one more (the memory bound); then everything is
    committed, moved and the position kept, in order."""
    source = FetchLog()
    for data in bounces(40):
        source.append(data)
    h = Harness(store, source, box(batch_size=5))
    commit = h.pipeline.commit_batch
    seen: list[list[list[int]]] = []

    def slow_first_commit(*args: Any, **kwargs: Any) -> None:
        if not seen:
            source.enough.wait(10)
            time.sleep(0.2)  # time for a fetch beyond the bound, if there were one
            seen.append([list(f) for f in source.fetches])
        commit(*args, **kwargs)

    h.pipeline.commit_batch = slow_first_commit  # type: ignore[method-assign]
    assert h.drain() == 40
    fetched = seen[0]
    assert len(fetched) == 2 + FETCH_AHEAD, fetched
    assert [uid for batch in fetched for uid in batch] == list(range(1, 5 * len(fetched) + 1))
    assert h.ledger() == 40 and not source.inbox and len(source.folders["processed"]) == 40
    position = store.get_mailbox_state(source.name)
    assert position is not None and position.last_uid == 40


def test_a_lease_lost_mid_pass_commits_nothing_more(store: Store) -> None:
    """Once this daemon no longer holds the mailbox's lease, no batch is committed: the ones
    committed before are moved, the ones fetched after stay in the folder, unrecorded."""
    source = BatchRecorder(store)
    for data in bounces(30):
        source.append(data)
    h = Harness(store, source, box(batch_size=5))
    checks = {"n": 0}

    def holds(name: str) -> bool:
        checks["n"] += 1
        return h.ledger() < 10  # lost once two batches are committed

    h.runtime.holds = holds
    with pytest.raises(LeaseLost):
        asyncio.run(h.worker.drain())
    committed = h.ledger()
    assert committed == 10, committed
    assert len(source.folders["processed"]) == committed and len(source.inbox) == 30 - committed
    assert source.disposed_uncommitted == []
    assert sorted(source.inbox) == list(range(committed + 1, 31))


class FailingMove(MemorySource):
    """The first move (after the first batch's commit) fails, as an IMAP MOVE the server refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.moves = 0

    async def dispose(self, keys: Any, disposal: Any) -> None:
        self.moves += 1
        if self.moves == 1:
            raise SourceError("MOVE refused")
        await super().dispose(keys, disposal)


def test_a_batch_whose_move_fails_after_its_commit_is_counted_as_processed(store: Store) -> None:
    """The pass's totals (the run --once summary) count what was committed even when its move
    then fails: the messages are recorded and stay in the folder, and the next pass moves them as
    already known."""
    source = FailingMove()
    for data in bounces(10):
        source.append(data)
    h = Harness(store, source, box(batch_size=5))
    with pytest.raises(SourceError, match="MOVE refused"):
        h.drain()
    committed = h.ledger()
    assert committed >= 5
    assert h.worker.totals["processed"] == committed
    left = len(source.inbox)
    assert left == 10 - len(source.folders.get("processed", [])) > 0
    assert h.drain() == left  # the next pass: moved as already known
    assert h.worker.totals["already"] == left and h.worker.totals["processed"] == committed
    assert not source.inbox and h.ledger() == 10


class StuckFetch(MemorySource):
    """The second fetch never answers (until it is cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches = 0
        self.stuck = asyncio.Event()
        self.cancelled = False

    async def fetch(self, keys: Any) -> Any:
        self.fetches += 1
        if self.fetches == 2:
            self.stuck.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return await super().fetch(keys)


def test_a_drain_cancelled_twice_takes_its_fetcher_with_it(store: Store) -> None:
    """A drain cancelled once waits for its fetcher to finish the command in hand; cancelled again
    while it waits (a shutdown out of time), it cancels the fetcher rather than leave it running
    past the pass."""
    source = StuckFetch()
    for data in bounces(10):
        source.append(data)
    h = Harness(store, source, box(batch_size=5))

    async def scenario() -> list[asyncio.Task[Any]]:
        drain = asyncio.ensure_future(h.worker.drain())
        await asyncio.wait_for(source.stuck.wait(), 30)
        drain.cancel()
        await asyncio.sleep(0.05)  # the drain now waits for the stuck fetcher
        assert not drain.done()
        drain.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drain
        await asyncio.sleep(0)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]

    assert asyncio.run(scenario()) == []
    assert source.cancelled
