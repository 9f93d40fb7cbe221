"""End-to-end throughput and latency of ``bounce-processor run`` against a real Dovecot.

    python tests/bench/daemon_bench.py [--messages 10000] [--runs 3] [--sizes 2000,10000]
                                       [--database sqlite|postgresql] [--latency-samples 10] [--migrated]
                                       [--baseline /work/base]

1. Throughput: the .eml files under samples/ are replicated (each copy made unique: its recipients
   renamed and a header added) until there are --messages of them, APPENDed to a Dovecot mailbox,
   and ``bounce-processor --log-format json run --once`` reads the mailbox over IMAP (STARTTLS,
   MOVE to Processed) into a fresh database (migrated by the daemon at start, or before the timed
   command with --migrated). Printed: messages/s for the whole command (start-up included) and for
   the processing alone (first to last message line), each also as a ratio to ``parse --jsonl
   --jobs 1`` on the same messages (a daemon starts once: the second ratio is its steady state),
   and the command's peak RSS (from wait4). The package's bytecode is compiled first, as an installed
   package has it. The mailbox has the daemon's default batch_size (BP_BENCH_BATCH=N measures
   another). Between runs the messages are moved back to INBOX and the database is new.
   Also printed: the time from the command's start to its first processed message (start-up and
   the first batch) and from its last message to its exit (the last batch's move, shutdown), with
   the load average beside each run; the CPU time of the command with its parse workers, and of
   the daemon's own process alone (all its threads: IMAP, the store's write, the log lines), in
   all and after its first processed message (per message: the figure that wall times on a
   loaded machine blur; ``daemon_cpu_bench.py`` splits it by stage), and Dovecot's CPU over the same
   time. Their sum over the CPUs is the least wall time the drain could take on this machine if no
   core were ever idle: printed as the bound it puts on the end-to-end ratio (``parse --jobs 1``
   has a core to itself and no server to share it with). --baseline DIR runs another
   checkout's command (DIR/.venv) before this one's in every run (A B A B), on the same messages.
   --sizes repeats the measure for other mailbox sizes, to show that memory does not grow with
   the mailbox (messages are streamed in batches).
2. Latency: ``bounce-processor run`` (the daemon, in IDLE) on another mailbox; a bounce for a new
   address is APPENDed and the time until the address is suppressed in the database is measured.

Needs root, Dovecot (Debian dovecot-imapd) and, for --database postgresql, the server at
127.0.0.1:5432. Medians are printed; run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from tests import servers  # noqa: E402
from tests.bench.bench_data import replicate  # noqa: E402
from tests.daemon.helpers import bounce_for, write_config  # noqa: E402
from tests.databases import PostgresDatabases  # noqa: E402

_DATABASES = PostgresDatabases("bp_bench")


def append_all(dovecot: servers.Dovecot, user: servers.MailUser, messages: list[bytes], threads: int = 4) -> float:
    started = time.monotonic()
    chunks = [messages[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=dovecot.append_many, args=(user, chunk)) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.monotonic() - started


def move_back(dovecot: servers.Dovecot, user: servers.MailUser) -> None:
    with dovecot.session(user) as imap:
        imap.select('"Processed"')
        typ, data = imap.uid("MOVE", "1:*", "INBOX")
        if typ != "OK":
            raise RuntimeError(f"MOVE back failed: {data!r}")


def new_database(kind: str, directory: Path, run: int) -> tuple[str, str | None]:
    """(URL, name of a PostgreSQL database to drop afterwards)."""
    if kind == "sqlite":
        return f"sqlite:///{directory / f'bench-{run}.db'}", None
    url = _DATABASES.create()
    return url, url


def drop_database(url: str | None) -> None:
    if url is not None:
        _DATABASES.drop(url)


def mailbox_config(dovecot: servers.Dovecot, user: servers.MailUser, **extra: object) -> dict[str, object]:
    return {
        "host": "127.0.0.1", "port": dovecot.imap_port, "tls": "starttls", "ca_file": str(dovecot.ca_file),
        "username": user.name, "password": user.password, **extra,
    }


def batch_setting() -> dict[str, object]:
    """The mailbox's batch_size: the daemon's default, or BP_BENCH_BATCH to measure another."""
    batch = os.environ.get("BP_BENCH_BATCH")
    return {"batch_size": int(batch)} if batch else {}


_BOOT = """
import atexit, os, resource, runpy, sys, time
out, pid = sys.argv.pop(1), os.getpid()
first = []


class _Watch:
    # stderr, noting this process's CPU at the first processed message's log line (then out of the way)
    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if '"message.processed"' in text:
            first.append(time.process_time())
            self.write = self._stream.write
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _report():
    if os.getpid() == pid:  # not a forked parse worker
        with open(out, "w") as f:
            f.write(f"{time.process_time()} {first[0] if first else -1}")


sys.stderr = _Watch(sys.stderr)
atexit.register(_report)
runpy.run_module("processor", run_name="__main__", alter_sys=True)
"""
"""Runs ``python -m processor ...`` and writes, at its exit, the CPU seconds of the daemon's own
process (all its threads, not its parse workers) and those it had used at its first processed
message's log line (start-up and the first batch)."""


class Run(NamedTuple):
    wall: float
    """Seconds of the whole command (start-up and shutdown included)."""
    rss: int
    """Peak RSS in kB."""
    span: float
    """Seconds from the first to the last processed message."""
    first: float
    """Seconds from the command's start to its first processed message (start-up, first batch)."""
    tail: float
    """Seconds from its last processed message to its exit (last batch's move, shutdown)."""
    main_cpu: float
    """CPU seconds of the daemon's own process (its threads, not its parse workers)."""
    main_first: float
    """... of which used before its first processed message (start-up, the first batch)."""
    cpu: float
    """CPU seconds of the daemon and its parse workers."""
    server_cpu: float
    """CPU seconds Dovecot used meanwhile (serving the drain: logins, FETCH, MOVE, TLS)."""


def run_once(config: Path, log: Path, python: str = sys.executable, server: servers.Dovecot | None = None) -> Run:
    """One ``run --once`` with ``python`` (this checkout's, or a baseline's), started through
    ``_BOOT``. Also prints the CPU seconds of the command and its parse workers (their sum over the
    wall time is how many of the cores the daemon kept busy), of the daemon's own process, and of
    ``server`` (the Dovecot it reads) over the same time."""
    from datetime import datetime

    env = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(config)}
    with log.open("wb") as out:
        wrap = os.environ.get("BP_BENCH_WRAP", "").split()  # e.g. a profiler: "py-spy record -o x --"
        server_before = server.cpu_seconds() if server is not None else 0.0
        clock = time.time()
        started = time.monotonic()
        main = log.with_suffix(".cpu")
        proc = subprocess.Popen([*wrap, python, "-c", _BOOT, str(main), "--log-format", "json", "run", "--once"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=config.parent)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    server_cpu = server.cpu_seconds() - server_before if server is not None else 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"run --once exited {proc.returncode}:\n{log.read_text()[-3000:]}")
    stamps = [datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp() for line in log.read_text().splitlines()
              if line.startswith("{") and '"message.processed"' in line]
    first, last = (stamps[0] - clock, stamps[-1] - clock) if stamps else (0.0, wall)
    cpu = usage.ru_utime + usage.ru_stime
    main_cpu, main_first = (float(x) for x in main.read_text().split())
    print(f"    CPU of run --once and its workers: {cpu:.2f}s over {wall:.2f}s wall = {cpu / wall:.2f} cores; "
          f"the daemon's own process {main_cpu:.2f}s, {main_first:.2f}s of it before the first processed message; "
          f"Dovecot meanwhile {server_cpu:.2f}s")
    return Run(wall, usage.ru_maxrss, last - first, first, wall - last, main_cpu, main_first, cpu, server_cpu)


def load() -> str:
    """The machine's load average (1 minute), printed beside each timing: other work skews it."""
    return f"load {os.getloadavg()[0]:.2f}"


def migrate(url: str) -> None:
    """Bring a new database to this code's schema, as ``bounce-processor db upgrade`` (or an
    earlier start) does before a daemon starts in production."""
    from processor.store import create_store_engine, upgrade

    engine = create_store_engine(url=url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def throughput(dovecot: servers.Dovecot, work: Path, size: int, runs: int, database: str, *, migrated: bool,
               baseline: Path | None = None) -> None:
    user = dovecot.new_user("bench")
    messages = replicate(size, PROJECT / "samples")
    megabytes = sum(len(m) for m in messages) / 1e6
    seconds = append_all(dovecot, user, messages)
    print(f"appended {size} messages ({megabytes:.1f} MB) in {seconds:.1f}s")
    files = work / f"parse-{size}"  # the same messages for ``parse --jobs 1``, the yardstick
    files.mkdir(exist_ok=True)
    for number, data in enumerate(messages):
        (files / f"{number:06d}.eml").write_bytes(data)
    del messages
    # with --baseline, each run is the baseline's command then this checkout's (A B A B ...)
    sides = {"this checkout": sys.executable}
    if baseline is not None:
        sides = {f"baseline {baseline}": str(baseline / ".venv" / "bin" / "python"), **sides}
    results: dict[str, list[Run]] = {side: [] for side in sides}
    parses = []
    moved = False
    for run in range(runs):
        parses.append(parse_jobs_1(files))
        for side, python in sides.items():
            if moved:
                move_back(dovecot, user)
            moved = True
            url, name = new_database(database, work, sum(len(done) for done in results.values()))
            if migrated:
                migrate(url)
            config = write_config(work / f"bench-{size}-{run}.toml", {
                "database": {"url": url},
                "api": {"enabled": False},
                "mailboxes.bench": mailbox_config(dovecot, user, **batch_setting()),
            })
            label = "" if baseline is None else f" ({side})"
            try:
                one = run_once(config, work / f"run-{size}-{run}{'-base' if python != sys.executable else ''}.log",
                               python, dovecot)
            finally:
                drop_database(name)
            left = len(dovecot.uids(user))
            if left:
                raise RuntimeError(f"{left} messages left in INBOX after run --once")
            results[side].append(one)
            print(f"  run {run + 1}{label}: {one.wall:.2f}s, {size / one.wall:.0f} messages/s end to end, "
                  f"{size / one.span if one.span else float('nan'):.0f} messages/s processing, first message "
                  f"after {one.first:.2f}s, exit {one.tail:.2f}s after the last, peak RSS {one.rss / 1024:.0f} MB; "
                  f"{load()}")
    parse = statistics.median(parses)
    schema = "migrated before the run" if migrated else "new, migrated by the daemon at start"
    for side, done in results.items():
        label = "" if baseline is None else f" [{side}]"
        wall, peak = statistics.median(r.wall for r in done), statistics.median(r.rss for r in done)
        span = statistics.median(r.span for r in done)
        main_cpu = statistics.median(r.main_cpu for r in done)
        after = statistics.median((r.main_cpu - r.main_first) / size * 1e6 for r in done)
        print(f"CPU{label}: the daemon's own process median {main_cpu:.2f}s = {main_cpu / size * 1e6:.0f} us/message "
              f"({after:.0f} us/message after its first processed message; runs: "
              f"{', '.join(f'{r.main_cpu:.2f}' for r in done)} s); with its parse workers median "
              f"{statistics.median(r.cpu for r in done):.2f}s")
        print(f"run --once{label}, {size} messages, {database} (schema {schema}): median {wall:.2f}s of {runs} runs "
              f"= {size / wall:.0f} messages/s end to end ({size / span:.0f}/s processing, start-up excluded); "
              f"first message after {statistics.median(r.first for r in done):.2f}s, exit "
              f"{statistics.median(r.tail for r in done):.2f}s after the last; peak RSS median {peak / 1024:.0f} MB "
              f"(runs: {', '.join(f'{r.rss / 1024:.0f}' for r in done)} MB)")
    print(f"parse --jsonl --jobs 1, same {size} messages as files, interleaved: median {parse:.2f}s = "
          f"{size / parse:.0f} messages/s")
    for side, done in results.items():
        label = "" if baseline is None else f" [{side}]"
        wall, span = statistics.median(r.wall for r in done), statistics.median(r.span for r in done)
        print(f"ratio{label} daemon end to end (whole command, start-up included) / parse --jobs 1 = "
              f"{parse / wall:.2f}; ratio daemon processing (first to last message, start-up excluded) / "
              f"parse --jobs 1 = {parse / span if span else float('nan'):.2f}")
        # The cores bound the ratio: the drain's CPU (the daemon, its workers, and the Dovecot that
        # serves it on the same machine) cannot be done in less wall time than it over the CPUs.
        cpus = os.cpu_count() or 1
        total = statistics.median(r.cpu + r.server_cpu for r in done)
        server_cpu = statistics.median(r.server_cpu for r in done)
        print(f"CPU bound{label}: the drain's CPU on this machine, median {total:.2f} core-s (the command and "
              f"its workers {statistics.median(r.cpu for r in done):.2f}, Dovecot {server_cpu:.2f}), needs at "
              f"least {total / cpus:.2f}s on {cpus} CPUs even with no core ever idle: the end-to-end ratio "
              f"cannot pass {parse / (total / cpus):.2f} here (parse --jobs 1's CPU is its own alone; a database "
              f"server's CPU, PostgreSQL's, is not counted: with it the bound is lower still)")
    shutil.rmtree(files, ignore_errors=True)


def parse_jobs_1(files: Path) -> float:
    """Wall time of ``bounce-processor parse --jsonl --jobs 1`` over the files (output discarded)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "processor", "parse", "--jsonl", "--jobs", "1", str(files)],
                   check=True, stdout=subprocess.DEVNULL, cwd=PROJECT)
    return time.perf_counter() - start


def latency(dovecot: servers.Dovecot, work: Path, samples: int, database: str) -> None:
    from processor.config import DatabaseSettings, Settings
    from processor.store import open_store

    user = dovecot.new_user("idle")
    url, name = new_database(database, work, 99)
    config = write_config(work / "latency.toml", {
        "database": {"url": url},
        "api": {"enabled": False},
        "mailboxes.idle": mailbox_config(dovecot, user, poll_interval_seconds=600),
    })
    env = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(config)}
    log = work / "latency.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "processor", "--log-format", "json", "--log-level", "DEBUG",
                                 "run"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    store = None
    try:
        deadline = time.monotonic() + 30
        while '"imap.idle"' not in log.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the daemon did not reach IDLE:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        store = open_store(Settings(database=DatabaseSettings(url=url)))
        imap = dovecot.connect(user)
        delays = []
        for n in range(samples):
            address = f"latency{n}-{secrets.token_hex(3)}@local.example.net"
            data = bounce_for(address)
            time.sleep(0.5)
            started = time.monotonic()
            typ, _ = imap.append('"INBOX"', None, None, data)
            if typ != "OK":
                raise RuntimeError("APPEND failed")
            while store.is_suppressed(address) is None:
                if time.monotonic() - started > 30:
                    raise RuntimeError(f"{address} not suppressed after 30s:\n{log.read_text()[-3000:]}")
                time.sleep(0.005)
            delays.append(time.monotonic() - started)
        imap.logout()
        print(f"APPEND -> suppressed, with IDLE, {database}: median {statistics.median(delays) * 1000:.0f} ms, "
              f"max {max(delays) * 1000:.0f} ms over {samples} bounces "
              f"({', '.join(f'{d * 1000:.0f}' for d in delays)} ms)")
    finally:
        if store is not None:
            store.close()
        proc.terminate()
        started = time.monotonic()
        code = proc.wait(20)
        print(f"daemon stopped by SIGTERM in {time.monotonic() - started:.2f}s, exit code {code}")
        drop_database(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sizes", default="", help="comma-separated mailbox sizes (default: --messages)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--latency-samples", type=int, default=10)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--migrated", action="store_true",
                        help="migrate each new database before the timed run (as a deployment's `db upgrade` "
                        "does); default: the daemon migrates it at start, inside the timed command")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of another version with its own .venv (e.g. /work/base): each throughput "
                        "run is then its command and this checkout's, one after the other (A B A B)")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the daemon's logs to this directory")
    args = parser.parse_args()
    missing = servers.dovecot_missing()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s] or [args.messages]
    # the bytecode an installed package has (pip compiles it); with PYTHONDONTWRITEBYTECODE set, a
    # source checkout would otherwise compile every module again in the daemon and in each worker
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PROJECT / "processor")], check=True,
                   capture_output=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; database {args.database}")
    dovecot = servers.Dovecot(servers.private_dir("bp-bench-dovecot-"))
    work = Path(tempfile.mkdtemp(prefix="bp-daemon-bench-"))
    dovecot.start()
    try:
        if not args.skip_throughput:
            for size in sizes:
                throughput(dovecot, work, size, args.runs, args.database, migrated=args.migrated,
                           baseline=args.baseline)
        if args.latency_samples:
            latency(dovecot, work, args.latency_samples, args.database)
    finally:
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, args.keep_logs / log.name)
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
