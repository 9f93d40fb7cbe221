"""CPU per message of the daemon's own process (not its parse workers), stage by stage, with
no server and no other process in the timing; prints figures, asserts nothing.

    python tests/bench/daemon_cpu_bench.py [--baseline /work/base] [--messages 4000] [--rounds 3]
                                           [--engine sqlite|postgresql|both] [--read-kib 64]

The messages are those of the daemon bench (the .eml files under samples/, replicated, each
copy's recipients renamed), in batches of the mailbox's default size (250). Each stage is the
daemon's code on them, in the order a drain runs it; each is timed with this process's CPU
clock (``time.process_time``: the database's work in process, SQLite, counts):

- ``imap``: the wire bytes of a ``UID FETCH (UID INTERNALDATE BODY.PEEK[])`` answer (Dovecot's
  form) handed to the IMAP source's protocol in reads of ``--read-kib`` KiB (asyncio's TLS
  transport hands over what it has decrypted, up to 256 KiB), then ``parse_fetch``;
- ``unpickle``: the parse pool's results coming back (``multiprocessing``'s pickling of the
  results of the two halves of a batch, as ``ProcessPoolExecutor`` sends them): the loads here;
  the workers' side (parse, classify and the dumps) is printed as ``worker`` for reference;
- ``prepare``: ``Pipeline.prepare_batch`` (the content hash, the return-path guard);
- ``commit``: ``Pipeline.commit_batch``: ``Store.record_messages`` (printed apart as ``record``:
  the ledger, the policy, the events, the suppressions, one transaction) then the log line and
  the metrics of each message (JSON lines written to /dev/null).

Each round, for each tree (this one and --baseline's, A B A B, each with its own virtualenv), a
process makes a fresh database, does what the tree's ``run`` command does once started (if
anything: its garbage-collector set-up), and runs every stage over ``--messages`` messages;
printed are the medians over rounds of the CPU microseconds per message. The stages' sum is most of what the
daemon's process spends per message; the asyncio loop, the executor threads' hand-offs and the
IMAP MOVE are not in it (``daemon_bench.py`` prints the whole process's CPU).
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

from bench_data import replicate, scratch_database  # (this file's folder: also from another tree's venv)

HERE = Path(__file__).resolve()
PROJECT = HERE.parents[2]
STAGES = ("imap", "unpickle", "prepare", "record", "commit", "total", "worker")


def _wire(batch: list[tuple[int, bytes]], tag: bytes) -> bytes:
    """Dovecot's answer to ``UID FETCH ... (UID INTERNALDATE BODY.PEEK[])``."""
    parts = [b'* %d FETCH (UID %d INTERNALDATE "30-Nov-2026 03:04:%02d +0000" BODY[] {%d}\r\n%s)\r\n'
             % (n, uid, uid % 60, len(data), data) for n, (uid, data) in enumerate(batch, 1)]
    return b"".join(parts) + tag + b" OK Fetch completed (0.010 + 0.000 secs).\r\n"


def worker(engine: str, count: int, batch_size: int, read_kib: int, profile: str = "") -> None:
    """In the tree's own virtualenv (cwd: the tree): one fresh database, every stage timed; with
    ``profile``, the daemon's stages (not the workers') profiled by cProfile into that file."""
    import asyncio
    import cProfile
    import threading
    from concurrent.futures import Future
    from multiprocessing.reduction import ForkingPickler

    import aioimaplib

    from processor import logs
    from processor.classify import load_classifier
    from processor.config import DatabaseSettings, MailboxSettings, Settings
    from processor.daemon import parallel
    from processor.daemon.pipeline import Pipeline
    from processor.sources import imap
    from processor.store import open_store

    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole process
    logs.configure("json", "INFO", stream=devnull)
    messages = replicate(count, Path.cwd() / "samples")  # the tree's own samples
    database = contextlib.ExitStack()
    url = database.enter_context(scratch_database(engine, "bp_cpubench"))
    settings = Settings(database=DatabaseSettings(url=url))
    store = open_store(settings, migrate=True)
    spent = dict.fromkeys(STAGES, 0.0)

    class Pool:  # the parse pool's answer, already computed: prepare_batch's submit() returns it
        def __init__(self) -> None:
            self.outcomes: list[Any] = []

        def submit(self, _messages: list[bytes], _rules: Any) -> Future[list[Any]]:
            done: Future[list[Any]] = Future()
            done.set_result(self.outcomes)
            return done

    pool = Pool()
    pipeline = Pipeline(settings, store, load_classifier(settings.rules), pool)  # type: ignore[arg-type]
    timed_record = store.record_messages

    def record_messages(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return timed_record(*args, **kwargs)
        finally:
            spent["record"] += time.process_time() - started

    store.record_messages = record_messages  # type: ignore[method-assign]
    box = MailboxSettings(host="127.0.0.1", username="bench", password="x")
    mailbox, uidvalidity = "bench", 1
    store.set_mailbox_state(mailbox, uidvalidity, 0)
    parallel._start(settings.parse)
    shipped = pipeline._rules_for_pool()
    halt = threading.Event()
    read = read_kib * 1024

    class Wire(asyncio.Transport):
        def write(self, data: Any) -> None:
            pass

    async def fetched(answer: bytes) -> Any:
        protocol = imap._Protocol(asyncio.get_running_loop(), lambda exc: None)
        protocol.connection_made(Wire())
        protocol.state = aioimaplib.SELECTED
        command = imap._FetchCommand("A001", "1:*", "(UID INTERNALDATE BODY.PEEK[])", prefix="UID", timeout=60)
        running = asyncio.ensure_future(protocol.execute(command))
        await asyncio.sleep(0)
        started = time.process_time()
        for start in range(0, len(answer), read):
            protocol.data_received(answer[start : start + read])
        response = await running
        out = imap.parse_fetch(response.lines)
        spent["imap"] += time.process_time() - started
        return out

    from processor.commands import run_cmd

    freeze = getattr(run_cmd, "_freeze_start_up", None)  # what the tree's ``run`` does once started, if anything
    if freeze is not None:
        freeze()
    profiler = cProfile.Profile()

    loop = asyncio.new_event_loop()
    uid = 0
    for first in range(0, count, batch_size):
        batch = []
        for data in messages[first : first + batch_size]:
            uid += 1
            batch.append((uid, data))
        if profile:
            profiler.enable()
        got = loop.run_until_complete(fetched(_wire(batch, b"A001")))
        profiler.disable()
        assert [m.data for m in got] == [data for _, data in batch]
        # the workers' side: parse and classify, each half of the batch pickled back
        started = time.process_time()
        half = -(-len(got) // 2)
        blobs = [ForkingPickler.dumps(parallel._parse_chunk([m.data for m in got[i : i + half]], shipped))
                 for i in range(0, len(got), half)]
        spent["worker"] += time.process_time() - started
        if profile:
            profiler.enable()
        started = time.process_time()
        pool.outcomes = [outcome for blob in blobs for outcome in ForkingPickler.loads(blob)]
        spent["unpickle"] += time.process_time() - started
        started = time.process_time()
        outcome = pipeline.prepare_batch(mailbox, box, uidvalidity, got, halt)
        spent["prepare"] += time.process_time() - started
        started = time.process_time()
        pipeline.commit_batch(mailbox, box, outcome)
        spent["commit"] += time.process_time() - started
        profiler.disable()
        assert not outcome.store_error and not outcome.left, outcome.store_error
    loop.close()
    if profile:
        profiler.dump_stats(profile)
    spent["total"] = spent["imap"] + spent["unpickle"] + spent["prepare"] + spent["commit"]
    store.close()
    database.close()
    print(json.dumps({stage: seconds / count * 1e6 for stage, seconds in spent.items()}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout with its own .venv (the 'before')")
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--read-kib", type=int, default=64, help="the size of each read handed to the protocol")
    parser.add_argument("--profile", default="", help="with --worker: cProfile the daemon's stages into this file")
    parser.add_argument("--worker", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.messages, args.batch, args.read_kib, args.profile)
        return 0
    trees = [("this", PROJECT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    for _, tree in trees:  # the bytecode an installed package has
        subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "compileall", "-q", "processor"], cwd=tree,
                       check=True, capture_output=True)
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_no in range(args.rounds):
        for engine in engines:
            for label, tree in reversed(trees) if round_no % 2 else trees:
                out = subprocess.run(
                    [str(tree / ".venv" / "bin" / "python"), str(HERE), "--worker", engine, "--messages",
                     str(args.messages), "--batch", str(args.batch), "--read-kib", str(args.read_kib)],
                    cwd=tree, check=True, capture_output=True, text=True)
                rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
                figures.setdefault((label, engine), []).extend(rows)
    print(f"the daemon's process, CPU us/message (median of {args.rounds} rounds, {args.messages} messages in "
          f"batches of {args.batch}, reads of {args.read_kib} KiB); load average {os.getloadavg()[0]:.2f}")
    for engine in engines:
        for label, tree in trees:
            rows = figures[(label, engine)]
            cells = ", ".join(f"{stage} {statistics.median(r[stage] for r in rows):.1f}" for stage in STAGES)
            print(f"  {engine:10} {label:8} ({tree}): {cells}")
        if len(trees) == 2:
            this, base = figures[("this", engine)], figures[("baseline", engine)]
            cells = ", ".join(
                f"{stage} {statistics.median(r[stage] for r in this) / statistics.median(r[stage] for r in base):.2f}"
                for stage in STAGES)
            print(f"  {engine:10} this/baseline: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
