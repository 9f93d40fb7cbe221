"""Two daemons against one on the same four mailboxes (PostgreSQL): the split and the speed-up.

    python tests/bench/share_bench.py [--messages 8000] [--runs 3] [--lease-seconds 2]

The messages (distinct generated bounces) are spread over four directory mailboxes (a fresh copy
per run: processed files are moved to Processed/ as in production). Each run starts with a fresh
database: once with one daemon, once with two started together
(interleaved, run by run), and times from the start until every message is in the ledger.
Printed: the medians, the ratio, and for the two-daemon runs how many messages each daemon
processed and the lease split read from pg_locks once it settled. On a 2-core machine the ratio
is bounded by the cores (each daemon already parses on all of them); the split is the point.
Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from tests.daemon.helpers import bounces, write_config  # noqa: E402
from tests.databases import PostgresDatabases  # noqa: E402

MAILBOXES = 4


def processed(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            row = conn.execute("SELECT count(*) FROM processed_message").fetchone()
    except psycopg.errors.UndefinedTable:  # the first daemon has not migrated the database yet
        return 0
    return int(row[0]) if row else 0


def lease_split(url: str) -> list[int]:
    """Mailbox leases per holding backend, largest first."""
    import psycopg

    from processor.daemon.lease import MAILBOX_LOCK_CLASS

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE d.datname = "
            "current_database() AND locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %s::bigint::oid",
            (MAILBOX_LOCK_CLASS,),
        ).fetchall()
    return sorted(Counter(pid for (pid,) in rows).values(), reverse=True)


def one_run(config: Path, url: str, daemons: int, total: int, work: Path) -> tuple[float, list[int], list[int]]:
    """(seconds until every message is in the ledger, messages per daemon, the settled split)."""
    logs = [work / f"daemon-{daemons}-{n}-{time.monotonic_ns()}.log" for n in range(daemons)]
    env = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(config)}
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "processor", "--log-format", "json", "run"], cwd=PROJECT, env=env,
                         stdout=log.open("wb"), stderr=subprocess.STDOUT)
        for log in logs
    ]
    split: list[int] = []
    try:
        while processed(url) < total:
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a daemon exited: {logs[0].read_text()[-2000:]}")
            if time.perf_counter() - start > 900:
                raise SystemExit(f"timed out with {processed(url)} of {total} messages")
            time.sleep(0.1)
        took = time.perf_counter() - start
        split = lease_split(url)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    per_daemon = []
    for log in logs:
        count = 0
        for line in log.read_text(errors="replace").splitlines():
            try:
                count += json.loads(line).get("event") == "message.processed"
            except (json.JSONDecodeError, AttributeError):
                continue
        per_daemon.append(count)
    return took, per_daemon, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease-seconds", type=float, default=2.0)
    args = parser.parse_args()
    databases = PostgresDatabases("bp_share")
    per = args.messages // MAILBOXES
    total = per * MAILBOXES
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folders = []
        for n in range(MAILBOXES):
            folder = work / f"box{n}"
            folder.mkdir()
            for i, data in enumerate(bounces(per, prefix=f"share{n}-")):
                (folder / f"{i:06d}.eml").write_bytes(data)
            folders.append(folder)
        try:
            for run in range(args.runs):
                for daemons in (1, 2):
                    url = databases.create()
                    run_dir = work / f"run-{run}-{daemons}"  # a fresh copy: processed files are moved away
                    copies = []
                    for folder in folders:
                        copy = run_dir / folder.name
                        shutil.copytree(folder, copy)
                        copies.append(copy)
                    sections: dict[str, dict[str, object]] = {
                        "database": {"url": url},
                        "daemon": {"lease_seconds": args.lease_seconds, "housekeeping_interval_seconds": 5.0},
                        "api": {"enabled": False},
                    }
                    for n, folder in enumerate(copies):
                        sections[f"mailboxes.box{n}"] = {"source": "directory", "path": str(folder),
                                                         "poll_interval_seconds": 1.0}
                    config = write_config(work / f"config-{run}-{daemons}.toml", sections)
                    took, per_daemon, split = one_run(config, url, daemons, total, work)
                    databases.drop(url)
                    times[daemons].append(took)
                    print(f"run {run + 1}, {daemons} daemon(s): {took:.2f}s, {total / took:.0f} messages/s, "
                          f"messages per daemon {per_daemon}, lease split at the end {split}")
        finally:
            databases.drop_all()
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{total} messages in {MAILBOXES} mailboxes, {os.cpu_count()} CPUs: one daemon median {one:.2f}s "
          f"({total / one:.0f}/s), two daemons median {two:.2f}s ({total / two:.0f}/s): ratio {one / two:.2f}x")


if __name__ == "__main__":
    main()
