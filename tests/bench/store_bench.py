"""Benchmark of the suppression store with a large list; prints figures, asserts nothing.

    python tests/bench/store_bench.py                       # both engines, 1,000,000 addresses
    python tests/bench/store_bench.py --engine sqlite --rows 100000 --runs 3

For each engine, ``--runs`` times: a fresh database, an import of a generated ROWS-row CSV through
the real import path (read_rows + Store.import_rows: parsing, normalisation, upserts and one audit
event per row), then single-address checks (``Store.is_suppressed``, in process, half of them
suppressed), 10,000-address batch checks (``Store.check_many``), the write rate of
``record_message``/``record_messages`` on the full database, and the database's size on disk.
Each figure printed is the median over the runs. Targets (issue 4): single check p99 <= 1 ms on
SQLite, batch of 10,000 <= 100 ms, import of 1,000,000 rows <= 60 s.

PostgreSQL: the server at 127.0.0.1:5432 (override with BOUNCE_TEST_POSTGRES_URL); the benchmark
creates a database of its own for each run and drops it afterwards.
"""

from __future__ import annotations

import argparse
import csv
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from processor.config import DatabaseSettings, Settings
from processor.records import BounceType, Event, EventKind, OriginalMessage, Verdict
from processor.store import MessageRef, Store, open_store
from processor.store.transfer import read_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.databases import throwaway_postgres

DOMAINS = 5000


def address(i: int) -> str:
    return f"user{i}.{i * 7919 % 100003}@domain{i % DOMAINS}.example"


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "reason", "created"])
        base = 1_700_000_000
        for i in range(rows):
            writer.writerow([address(2 * i), "bounced" if i % 3 else "unsubscribed", base + i])


@contextmanager
def database(engine: str, workdir: Path) -> Iterator[str]:
    if engine == "sqlite":
        path = workdir / f"bench-{secrets.token_hex(4)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with throwaway_postgres("bp_bench") as url:
        yield url


def size_on_disk(store: Store, url: str) -> int:
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = sa.make_url(url).database or ""
        return sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists())
    with store.engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")
        size: int = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
        return size


def record_rates(store: Store, messages: int) -> tuple[float, float]:
    """Messages per second through record_message (one transaction each) and record_messages
    (batches of 50), each message a bounce for a new address, half hard and half soft."""
    def verdicts(tag: str, i: int) -> list[Verdict]:
        event = Event(EventKind.FAILURE, recipient=f"{tag}{i}@rates.example", status="5.1.1" if i % 2 else "4.2.2",
                      diagnostic="smtp; 550 5.1.1 user unknown", original=OriginalMessage(message_id=f"<{i}@x>"))
        return [Verdict(event, "userunknown" if i % 2 else "mailboxfull",
                        BounceType.HARD if i % 2 else BounceType.SOFT, "bench")]

    started = time.perf_counter()
    for i in range(messages):
        store.record_message(MessageRef.for_bytes(b"single %d" % i, "INBOX", 1, i + 1), verdicts("s", i))
    single = messages / (time.perf_counter() - started)
    started = time.perf_counter()
    for first in range(0, messages, 50):
        store.record_messages([(MessageRef.for_bytes(b"batch %d" % i, "INBOX", 2, i + 1), verdicts("b", i))
                               for i in range(first, min(first + 50, messages))])
    return single, messages / (time.perf_counter() - started)


def one_run(
    engine: str, rows: int, csv_path: Path, workdir: Path, *, checks: int, batches: int, messages: int
) -> dict[str, float]:
    rng = random.Random(4)
    with database(engine, workdir) as url:
        store = open_store(Settings(database=DatabaseSettings(url=url)))
        try:
            started = time.perf_counter()
            with csv_path.open("rb") as stream:
                report = store.import_rows(read_rows(stream, "csv"))
            import_s = time.perf_counter() - started
            assert report.added == rows, report
            if engine == "postgresql":
                with store.engine.connect() as conn:
                    conn.execute(sa.text("ANALYZE"))
                    conn.commit()
            # Single checks: even indexes are suppressed, odd ones are not.
            probes = [address(rng.randrange(2 * rows)) for _ in range(checks)]
            for probe in probes[:500]:
                store.is_suppressed(probe)
            timings = []
            hits = 0
            for probe in probes:
                t0 = time.perf_counter_ns()
                hits += store.is_suppressed(probe) is not None
                timings.append(time.perf_counter_ns() - t0)
            timings.sort()
            batch_ms = []
            for _ in range(batches):
                batch = [address(rng.randrange(2 * rows)) for _ in range(10_000)]
                started = time.perf_counter()
                result = store.check_many(batch)
                batch_ms.append((time.perf_counter() - started) * 1000)
                assert 4000 < len(result.suppressed) < 6000
            single_rate, batch_rate = record_rates(store, messages)
            size = size_on_disk(store, url)
        finally:
            store.close()
    return {
        "import_s": import_s,
        "import_rows_per_s": rows / import_s,
        "check_median_us": timings[len(timings) // 2] / 1000,
        "check_p99_us": timings[int(len(timings) * 0.99)] / 1000,
        "check_hit_ratio": hits / len(probes),
        "batch_median_ms": statistics.median(batch_ms),
        "batch_max_ms": max(batch_ms),
        "record_msgs_per_s": single_rate,
        "record_batch50_msgs_per_s": batch_rate,
        "size_mb": size / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checks", type=int, default=20_000, help="single-address checks per run")
    parser.add_argument("--batches", type=int, default=10, help="10,000-address batch checks per run")
    parser.add_argument("--messages", type=int, default=2000, help="messages recorded per run (write rate)")
    parser.add_argument("--workdir", type=Path, default=None, help="where SQLite files and the CSV go")
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "suppressions.csv"
        t0 = time.perf_counter()
        write_csv(csv_path, args.rows)
        print(f"generated {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.1f} MB CSV) in "
              f"{time.perf_counter() - t0:.1f} s; {args.runs} runs per engine; medians over runs")
        sys.stdout.flush()
        for engine in engines:
            runs = []
            for n in range(args.runs):
                figures = one_run(engine, args.rows, csv_path, workdir, checks=args.checks, batches=args.batches,
                                  messages=args.messages)
                runs.append(figures)
                print(f"  {engine} run {n + 1}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()))
                sys.stdout.flush()

            def med(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            print(f"{engine}: {args.rows:,} suppressed addresses, medians of {args.runs} runs")
            print(f"{engine}: import {args.rows:,}-row CSV: {med('import_s'):.1f} s "
                  f"({med('import_rows_per_s'):,.0f} rows/s)")
            print(f"{engine}: single check (in process, {args.checks:,} lookups/run): median "
                  f"{med('check_median_us'):.0f} us, p99 {med('check_p99_us'):.0f} us")
            print(f"{engine}: batch check of 10,000 addresses: median {med('batch_median_ms'):.1f} ms, "
                  f"worst {med('batch_max_ms'):.1f} ms")
            print(f"{engine}: record_message (one transaction per message, on the full database): "
                  f"{med('record_msgs_per_s'):,.0f} messages/s; record_messages in batches of 50: "
                  f"{med('record_batch50_msgs_per_s'):,.0f} messages/s")
            print(f"{engine}: database size on disk: {med('size_mb'):.0f} MB")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
