"""Two real processes writing to the same store at the same time lose nothing and count exactly."""

from __future__ import annotations

import multiprocessing
from typing import Any

import sqlalchemy as sa

from processor.store import MessageRef, open_store
from tests.store.conftest import make_settings
from tests.store.helpers import soft

ADDRESSES = [f"shared{i}@example.org" for i in range(20)]
ROUNDS = 5
WORKERS = 2
THRESHOLD = ROUNDS * WORKERS


def _soft_worker(url: str, worker: int, start: Any, results: Any) -> None:
    """Record ROUNDS messages, each with a soft bounce for every shared address."""
    store = open_store(make_settings(url, soft_threshold=THRESHOLD, soft_window_days=30), migrate=False)
    order = ADDRESSES if worker % 2 == 0 else list(reversed(ADDRESSES))
    start.wait(timeout=60)
    actions: list[str] = []
    for round_ in range(ROUNDS):
        ref = MessageRef.for_bytes(f"worker {worker} round {round_}".encode(), f"box{worker}", 1, round_ + 1)
        result = store.record_message(ref, [soft(a) for a in order])
        actions.extend(str(d.action) for d in result.decisions)
    store.close()
    results.put(actions)


def _duplicate_worker(url: str, worker: int, start: Any, results: Any) -> None:
    """Record the same 30 messages as the other worker; report how many were duplicates."""
    store = open_store(make_settings(url), migrate=False)
    start.wait(timeout=60)
    duplicates = 0
    for n in range(30):
        ref = MessageRef.for_bytes(f"the same message {n}".encode(), "INBOX", 9, n + 1)
        duplicates += store.record_message(ref, [soft("dup@example.org"), soft(f"one{n}@example.org")]).duplicate
    store.close()
    results.put(duplicates)


def _run(target: Any, url: str) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [context.Process(target=target, args=(url, n, start, results)) for n in range(WORKERS)]
    for process in processes:
        process.start()
    collected = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return collected


def test_concurrent_soft_bounces_count_exactly(db_url: str) -> None:
    """Two processes recording soft bounces for the same 20 addresses: each address is suppressed by
    exactly its THRESHOLD-th event, none earlier, none missed."""
    actions = _run(_soft_worker, db_url)
    assert sum(len(a) for a in actions) == len(ADDRESSES) * THRESHOLD
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            per_address = conn.execute(sa.text(
                "SELECT address, sum(CASE WHEN counted THEN 1 ELSE 0 END), "
                "sum(CASE WHEN decision = 'suppress' THEN 1 ELSE 0 END), "
                "sum(CASE WHEN decision = 'count' THEN 1 ELSE 0 END) FROM event GROUP BY address ORDER BY address"
            )).all()
            entries = conn.execute(sa.text("SELECT count(*) FROM suppression")).scalar()
            ledger = conn.execute(sa.text("SELECT count(*) FROM processed_message")).scalar()
    finally:
        engine.dispose()
    assert ledger == ROUNDS * WORKERS
    assert entries == len(ADDRESSES)
    assert [tuple(row[1:]) for row in per_address] == [(THRESHOLD, 1, THRESHOLD - 1)] * len(ADDRESSES)


def test_concurrent_duplicates_count_once(db_url: str) -> None:
    """Two processes recording the same 30 messages at once: each message is counted exactly once."""
    duplicates = _run(_duplicate_worker, db_url)
    assert sum(duplicates) == 30
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            ledger = conn.execute(sa.text("SELECT count(*) FROM processed_message")).scalar()
            dup_events = conn.execute(sa.text("SELECT count(*) FROM event WHERE address = 'dup@example.org'")).scalar()
            events = conn.execute(sa.text("SELECT count(*) FROM event")).scalar()
            entry = conn.execute(sa.text("SELECT count(*) FROM suppression WHERE address = 'dup@example.org'")).scalar()
    finally:
        engine.dispose()
    assert (ledger, dup_events, events, entry) == (30, 30, 60, 1)
