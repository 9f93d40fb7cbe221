"""Benchmark of the Postfix policy service with a large suppression list; prints figures.

    python tests/bench/policyd_bench.py                          # SQLite, 1,000,000 entries, 5 runs
    python tests/bench/policyd_bench.py --postgresql --runs 3    # a throwaway PostgreSQL database
    python tests/bench/policyd_bench.py --mode query --connections 4 16

A store with ENTRIES suppressed addresses (imported through ``Store.import_rows``: 80% permanent
hard bounces, 10% soft bounces with an expiry, 10% complaints) is made once and reused
(``--db``). For each run, ``bounce-processor policyd`` is started as a process of its own, with
its default settings (one log line per REJECT to a file), and a load-generating process opens
CONNECTIONS connections on loopback; each sends Postfix-shaped RCPT requests (28 attributes)
one after another, waiting for each answer, as Postfix's smtpd processes do. Half of the
recipients are suppressed (random entries of the list), half are not. After a warm-up, requests
are counted for SECONDS; latency is measured per request at the client (send to answer).

Figures per connection count are medians over the runs: requests/s, latency p50/p99/p99.9, and
the service's start-up load time and resident memory. Targets (issue 7): >= 5,000 requests/s
and p99 <= 2 ms. Also printed once: the in-process cost of one answer (no network).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))
from tests.databases import throwaway_postgres  # noqa: E402

DOMAINS = 5000


def address(i: int) -> str:
    return f"user{i}.{i * 7919 % 100003}@domain{i % DOMAINS}.example"


def request(recipient: str, n: int) -> bytes:
    attrs = [
        ("request", "smtpd_access_policy"), ("protocol_state", "RCPT"), ("protocol_name", "ESMTP"),
        ("helo_name", "app1.sender.example"), ("queue_id", ""), ("sender", "news@sender.example"),
        ("recipient", recipient), ("recipient_count", "0"), ("client_address", "10.0.0.5"),
        ("client_name", "app1.sender.example"), ("reverse_client_name", "app1.sender.example"),
        ("instance", f"{n:x}.6754a1b2.2f3e.0"), ("sasl_method", ""), ("sasl_username", ""),
        ("sasl_sender", ""), ("size", "4321"), ("ccert_subject", ""), ("ccert_issuer", ""),
        ("ccert_fingerprint", ""), ("ccert_pubkey_fingerprint", ""), ("encryption_protocol", ""),
        ("encryption_cipher", ""), ("encryption_keysize", "0"), ("etrn_domain", ""), ("stress", ""),
        ("server_address", "127.0.0.1"), ("server_port", "25"), ("policy_context", ""),
    ]
    return ("".join(f"{k}={v}\n" for k, v in attrs) + "\n").encode()


# --------------------------------------------------------------------------- the store


def ensure_store(url: str, entries: int) -> None:
    from processor.config import DatabaseSettings, Settings
    from processor.store import ImportRow, open_store

    store = open_store(Settings(database=DatabaseSettings(url=url, sqlite_synchronous="normal")))
    try:
        have = store.stats().active_total
        if have == entries:
            print(f"store: {url} already holds {entries:,} entries")
            return
        if have:
            raise SystemExit(f"{url} holds {have:,} entries, not {entries:,}: give another --db")
        now = datetime.now(UTC)
        soft_until = now + timedelta(days=14)

        def rows() -> Any:
            for i in range(entries):
                kind = i % 10
                if kind == 0:
                    yield ImportRow(address(2 * i), line=i + 2, reason="mailboxfull", bounce_type="soft",
                                    expires_at=soft_until, source="bounce")
                elif kind == 1:
                    yield ImportRow(address(2 * i), line=i + 2, reason="abuse", bounce_type="complaint",
                                    source="complaint")
                else:
                    yield ImportRow(address(2 * i), line=i + 2, reason="userunknown", bounce_type="hard",
                                    source="bounce")

        started = time.perf_counter()
        report = store.import_rows(rows(), actor="bench")
        print(f"store: imported {report.added:,} entries in {time.perf_counter() - started:.1f} s")
    finally:
        store.close()


# --------------------------------------------------------------------------- load generator


class _Conn(asyncio.Protocol):
    """One client connection: one request outstanding at a time; with ``interval`` (seconds) the
    next request is sent no earlier than its slot (a paced load), else at once (maximum load)."""

    def __init__(self, requests: list[bytes], latencies: list[int], state: dict[str, Any], interval: float) -> None:
        self.requests = requests
        self.latencies = latencies
        self.state = state
        self.interval = interval
        self.loop = asyncio.get_running_loop()
        self.next_at = self.loop.time() + random.random() * interval
        self.buffer = b""
        self.sent_at = 0
        self.i = random.randrange(len(requests))
        self.transport: Any = None
        self.done: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._schedule()

    def _schedule(self) -> None:
        if not self.interval:
            self._send()
            return
        now = self.loop.time()
        at, self.next_at = self.next_at, max(self.next_at, now) + self.interval
        if at <= now:
            self._send()
        else:
            self.loop.call_at(at, self._send)

    def _send(self) -> None:
        self.i = (self.i + 1) % len(self.requests)
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.requests[self.i])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.buffer.endswith(b"\n\n"):
            return
        now = time.perf_counter_ns()
        self.buffer = b""
        if self.state["measuring"]:
            self.latencies.append(now - self.sent_at)
        if self.state["running"]:
            self._schedule()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _load(port: int, connections: int, rate: float, seconds: float, warmup: float,  # noqa: PLR0917
          requests: list[bytes], out: Any) -> None:
    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        latencies: list[int] = []
        state = {"measuring": False, "running": True}
        interval = connections / rate if rate else 0.0
        conns = []
        for _ in range(connections):
            _, proto = await loop.create_connection(
                lambda: _Conn(requests, latencies, state, interval), "127.0.0.1", port)
            conns.append(proto)
        await asyncio.sleep(warmup)
        state["measuring"] = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        state["measuring"] = False
        elapsed = time.perf_counter() - started
        state["running"] = False
        await asyncio.wait_for(asyncio.gather(*(c.done for c in conns)), 10)
        for c in conns:
            c.transport.close()
        return latencies, elapsed

    latencies, elapsed = asyncio.run(main())
    out.send((latencies, elapsed))


def load(port: int, connections: int, rate: float, seconds: float, warmup: float,  # noqa: PLR0917
         requests: list[bytes]) -> tuple[float, list[int]]:
    """(requests per second, latencies in ns) from a client in a process of its own; ``rate`` 0
    is as fast as the service answers."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    proc = context.Process(target=_load, args=(port, connections, rate, seconds, warmup, requests, sender))
    proc.start()
    latencies, elapsed = receiver.recv()
    proc.join()
    return len(latencies) / elapsed, latencies


# --------------------------------------------------------------------------- the service


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_service(url: str, mode: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path, float]:
    port = free_port()
    config = workdir / "policyd.toml"
    config.write_text(f'[database]\nurl = {json.dumps(url)}\n\n[policyd]\nmode = "{mode}"\n')
    log = workdir / "policyd.log"
    out = log.open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor", "--config", str(config), "--log-format", "json", "policyd",
         "--listen", f"inet:127.0.0.1:{port}"],
        cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
    )
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"policyd exited {proc.returncode}:\n{log.read_text()}")
        if b'"policyd.listening"' in log.read_bytes():
            break
        time.sleep(0.05)
    return proc, port, log, time.perf_counter() - started


def rss_mb(pid: int) -> tuple[float, float, float]:
    """(resident, peak resident, anonymous resident) memory of a process in MiB; the anonymous part
    leaves out the database file's pages mapped by SQLite (shared with the page cache)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon"))  # type: ignore[return-value]


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def in_process_cost(url: str, mode: str) -> None:
    """The cost of answering one request inside the service, without the network."""
    from processor.config import DatabaseSettings, PolicydSettings, Settings
    from processor.policyd import PolicyServer, parse_request

    settings = Settings(database=DatabaseSettings(url=url), policyd=PolicydSettings(mode=mode))  # type: ignore[arg-type]
    server = PolicyServer(settings, listen="inet:127.0.0.1:0")
    server._log_answers = False
    asyncio.run(server.lookup.start())
    hit = parse_request(request(address(2 * 12345 + 2), 1)[:-2])
    miss = parse_request(request(address(2 * 12345 + 1), 1)[:-2])
    raw = request(address(2 * 777), 1)[:-2]
    cases: list[tuple[str, Callable[[], bytes]]] = [
        ("answer (suppressed)", lambda: server.answer(hit)),
        ("answer (not suppressed)", lambda: server.answer(miss)),
        ("parse + answer", lambda: server.answer(parse_request(raw))),
    ]
    for name, work in cases:
        n = 100_000
        started = time.perf_counter()
        for _ in range(n):
            work()
        print(f"in process ({mode}): {name:24s} {(time.perf_counter() - started) / n * 1e6:6.1f} us")
    server.lookup.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--url", help="database URL (default: a SQLite file, see --db)")
    parser.add_argument("--postgresql", action="store_true",
                        help="a throwaway PostgreSQL database of its own (dropped at the end)")
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "bp-policyd-bench.db",
                        help="SQLite file kept between invocations (made on first use)")
    parser.add_argument("--mode", choices=["memory", "query"], default="memory")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32],
                        help="connection counts for the maximum load (as fast as answered)")
    parser.add_argument("--paced-rate", type=float, nargs="*", default=[5000.0],
                        help="offered rates (requests/s) for the paced load")
    parser.add_argument("--paced-connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()

    if args.postgresql:
        with throwaway_postgres("bp_policyd_bench") as url:
            run_benchmark(args, url)
    else:
        run_benchmark(args, args.url or f"sqlite:///{args.db}")


def run_benchmark(args: argparse.Namespace, url: str) -> None:
    ensure_store(url, args.entries)
    in_process_cost(url, args.mode)
    rng = random.Random(7)
    recipients = [address(2 * rng.randrange(args.entries) + rng.randrange(2)) for _ in range(50_000)]
    requests = [request(r, n) for n, r in enumerate(recipients)]

    loads: list[tuple[int, float, bool]] = [(c, 0.0, False) for c in args.connections]
    loads += [(args.paced_connections, r, False) for r in args.paced_rate]
    if args.paced_rate:
        loads.append((args.paced_connections, args.paced_rate[0], True))
    results: dict[tuple[int, float, bool], list[tuple[float, float, float, float]]] = {key: [] for key in loads}
    service: list[tuple[float, float, float, float]] = []

    def label(connections: int, rate: float, reload: bool) -> str:
        pace = f"paced at {rate:,.0f}/s" if rate else "as fast as answered"
        return f"{connections:3d} connections, {pace}" + (", full reload (SIGHUP) meanwhile" if reload else "")

    with tempfile.TemporaryDirectory(prefix="bp-policyd-bench-") as tmp:
        for run in range(1, args.runs + 1):
            proc, port, log, start_seconds = start_service(url, args.mode, Path(tmp))
            try:
                for connections, rate, reload in loads:
                    if reload:  # the whole list is read again in the middle of the measurement
                        timer = threading.Timer(args.warmup + args.seconds / 3, proc.send_signal, [signal.SIGHUP])
                        timer.start()
                    done, latencies = load(port, connections, rate, args.seconds, args.warmup, requests)
                    figures = (done, percentile(latencies, 0.5), percentile(latencies, 0.99),
                               percentile(latencies, 0.999))
                    results[(connections, rate, reload)].append(figures)
                    print(f"run {run}: {label(connections, rate, reload)}: {done:8,.0f} req/s  "
                          f"p50 {figures[1]:.3f} ms  p99 {figures[2]:.3f} ms  p99.9 {figures[3]:.3f} ms")
                current, peak, anon = rss_mb(proc.pid)
                service.append((start_seconds, current, peak, anon))
            finally:
                proc.terminate()
                proc.wait(30)
            loaded = [json.loads(line) for line in log.read_text().splitlines() if '"policyd.loaded"' in line]
            if loaded:
                print(f"run {run}: service loaded {loaded[0]['entries']:,} entries in {loaded[0]['seconds']} s, "
                      f"listening {start_seconds:.1f} s after start; RSS {current:.0f} MiB (peak {peak:.0f}, "
                      f"anonymous {anon:.0f})")

    print(f"\nmedians of {args.runs} runs, {args.entries:,} suppressed addresses, mode {args.mode}, "
          f"{url.split(':', 1)[0]}, {os.cpu_count()} CPUs (targets >= 5,000 req/s, p99 <= 2 ms):")
    for (connections, rate, reload), runs in results.items():
        med = [statistics.median(r[k] for r in runs) for k in range(4)]
        print(f"policyd {label(connections, rate, reload)}: {med[0]:8,.0f} req/s  p50 {med[1]:.3f} ms  "
              f"p99 {med[2]:.3f} ms  p99.9 {med[3]:.3f} ms")
    start, rss, peak, anon = (statistics.median(s[k] for s in service) for k in range(4))
    print(f"policyd start-up (load + listen): {start:.1f} s; RSS {rss:.0f} MiB, peak {peak:.0f} MiB, "
          f"anonymous {anon:.0f} MiB")


if __name__ == "__main__":
    main()
