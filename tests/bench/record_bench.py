"""The pipeline's write alone: ``Store.record_messages`` on batches of realistic messages; prints
figures, asserts nothing.

    python tests/bench/record_bench.py [--baseline /work/base] [--batches 8] [--batch 250] [--rounds 3]

The messages are the .eml files under samples/, replicated as the daemon bench does (each copy's
recipients renamed, so every address is new), parsed and classified beforehand with the default
rules; the addresses are normalised beforehand too (the daemon's parse pool does that). Each
round, for each tree (this one, and --baseline's when given: A B A B) and each engine, a worker
process on that tree's virtualenv makes a fresh database (PostgreSQL: a throwaway database on the
server at 127.0.0.1:5432 or $BOUNCE_TEST_POSTGRES_URL; SQLite: a file), records ``--batches``
batches of ``--batch`` messages, and reports per batch: the wall time of the call, the process's
CPU time in it, and the statements it sent (psycopg: a cursor that counts execute, each row of
executemany, and COPY; SQLite: the connection's trace callback). Printed: medians over every
batch of every round (the first batch of each database, which pays for connecting, left out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_data import replicated, scratch_database  # (this file's folder: also from another tree's venv)

HERE = Path(__file__).resolve()
PROJECT = HERE.parents[2]


def worker(engine: str, batches: int, size: int) -> None:
    """In the tree's own virtualenv: one fresh database, ``batches`` timed batches; JSON lines out."""

    import sqlalchemy as sa

    from processor.classify import load_classifier
    from processor.config import DatabaseSettings, Settings
    from processor.parse import ParseError, parse
    from processor.store import MessageRef, open_store

    classifier = load_classifier()
    stream = replicated(PROJECT / "samples")
    database = contextlib.ExitStack()
    url = database.enter_context(scratch_database(engine, "bp_recbench"))
    counter = [0]
    store = open_store(Settings(database=DatabaseSettings(url=url)), migrate=True)
    try:
        if engine == "postgresql":
            import psycopg

            class Counting(psycopg.Cursor):  # type: ignore[type-arg]
                def execute(self, *args: Any, **kwargs: Any) -> Any:
                    counter[0] += 1
                    return super().execute(*args, **kwargs)

                def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
                    params_seq = list(params_seq)
                    counter[0] += len(params_seq)
                    return super().executemany(query, params_seq, **kwargs)

                def copy(self, *args: Any, **kwargs: Any) -> Any:
                    counter[0] += 1
                    return super().copy(*args, **kwargs)

            @sa.event.listens_for(store.engine, "connect")
            def _count(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.cursor_factory = Counting
        else:
            @sa.event.listens_for(store.engine, "connect")
            def _trace(dbapi_connection: Any, _record: Any) -> None:
                def traced(_sql: str) -> None:
                    counter[0] += 1

                dbapi_connection.set_trace_callback(traced)
        store.engine.dispose()  # the listeners see every connection from here on
        normalise = store.database.normalise
        n = 0
        for batch_no in range(batches):
            batch: list[tuple[MessageRef, list[Any]]] = []
            addresses: list[list[tuple[str, str]]] = []
            while len(batch) < size:
                data = next(stream)
                n += 1
                try:
                    verdicts = [classifier.classify(e) for e in parse(data)]
                except ParseError:
                    continue
                batch.append((MessageRef.for_bytes(data, "INBOX", 7, n), verdicts))
                given = []
                for verdict in verdicts:
                    try:
                        given.append((normalise(verdict.event.recipient), ""))
                    except Exception as exc:  # AddressError
                        given.append(("", str(exc)))
                addresses.append(given)
            if batch_no == 0:
                store.set_mailbox_state("INBOX", 7, 0)
            counter[0] = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            results = store.record_messages(batch, addresses=addresses)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            assert not any(r.duplicate for r in results)
            print(json.dumps({"batch": batch_no, "wall_ms": wall * 1000, "cpu_ms": cpu * 1000,
                              "statements": counter[0], "verdicts": sum(len(v) for _, v in batch)}), flush=True)
    finally:
        store.close()
        database.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path,
                        help="another checkout (the 'before'): its .venv, or this one's with its code first")
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--batches", type=int, default=8, help="batches per database")
    parser.add_argument("--batch", type=int, default=250, help="messages per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batches, args.batch)
        return 0
    trees = [("this", PROJECT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    engines = ["postgresql", "sqlite"] if args.engine == "both" else [args.engine]
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for engine in engines:
            for label, tree in reversed(trees) if _ % 2 else trees:
                python = tree / ".venv" / "bin" / "python"
                env = dict(os.environ)
                if not python.exists():  # a plain checkout (git archive): this virtualenv, its code first
                    python, env["PYTHONPATH"] = Path(sys.executable), str(tree)
                out = subprocess.run(
                    [str(python), str(HERE), "--worker", engine, "--batches", str(args.batches), "--batch",
                     str(args.batch)], cwd=tree, check=True, capture_output=True, text=True, env=env)
                rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
                figures.setdefault((label, engine), []).extend(r for r in rows if r["batch"] > 0)
    print(f"record_messages, batches of {args.batch} messages, {args.rounds} rounds x {args.batches - 1} batches; "
          f"load average {os.getloadavg()[0]:.2f}")
    for engine in engines:
        for label, tree in trees:
            rows = figures[(label, engine)]

            def med(key: str, rows: list[dict[str, float]] = rows) -> float:
                return statistics.median(r[key] for r in rows)

            print(f"  {engine:10} {label:8} ({tree}): statements/batch {med('statements'):.0f}, "
                  f"wall {med('wall_ms'):.1f} ms/batch, CPU {med('cpu_ms'):.1f} ms/batch "
                  f"({med('verdicts'):.0f} verdicts/batch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
