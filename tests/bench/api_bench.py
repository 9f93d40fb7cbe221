"""Benchmark of the suppression API under load; prints figures, asserts nothing.

    python tests/bench/api_bench.py                        # both engines, 1,000,000 entries
    python tests/bench/api_bench.py --engine sqlite --rows 100000 --runs 3 --duration 5

For each engine: a database with ROWS suppressed addresses (imported through Store.import_rows),
then the API served by uvicorn in ONE process (``bounce-processor api``, with a bearer token, as
in production), and load from a SECOND process on loopback:

- wrk (Debian's ``wrk``): GET /v1/suppressions/{address} (and HEAD) for random addresses, half of
  them suppressed, ``--connections`` keep-alive connections, ``--duration`` seconds per run:
  requests/s and latency p50/p99 as wrk measures them;
- the project's client (processor.client.SuppressionClient, from this process): POST
  /v1/suppressions/check with 10,000 addresses, half suppressed, timed end to end (JSON both ways).

Each figure printed is the median over ``--runs`` runs (after one warm-up run). Targets (issue 6):
GET >= 2,000 requests/s with p99 <= 10 ms on this 2-core machine; a 10,000-address check <= 200 ms.

PostgreSQL: the server at 127.0.0.1:5432 (override with BOUNCE_TEST_POSTGRES_URL); the benchmark
creates a database of its own and drops it afterwards (``--keep`` keeps it, and the SQLite file,
for the next invocation).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

from processor.api.auth import hash_token, new_token
from processor.client import SuppressionClient
from processor.config import DatabaseSettings, Settings
from processor.store import ImportRow, open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.databases import ADMIN_URL

DOMAINS = 5000
BASE_TIME = 1_700_000_000

WRK_SCRIPT = """
local rows = %(rows)d
local domains = %(domains)d
wrk.method = "%(method)s"
wrk.headers["Authorization"] = "Bearer %(token)s"
math.randomseed(%(seed)d)
request = function()
  local i = math.random(0, 2 * rows - 1)
  local path = "/v1/suppressions/user" .. i .. "." .. (i * 7919 %% 100003) .. "@domain" .. (i %% domains) .. ".example"
  return wrk.format(nil, path)
end
"""


def address(i: int) -> str:
    """Even i: suppressed; odd i: not (the wrk script builds the same addresses)."""
    return f"user{i}.{i * 7919 % 100003}@domain{i % DOMAINS}.example"


def rows_for(count: int) -> Iterator[ImportRow]:
    from datetime import UTC, datetime

    for i in range(count):
        created = datetime.fromtimestamp(BASE_TIME + i, UTC)
        yield ImportRow(address(2 * i), line=i + 1, reason="bounced" if i % 3 else "unsubscribed", created=created)


@contextmanager
def database(engine: str, rows: int, workdir: Path, keep: bool) -> Iterator[str]:
    """A database holding ROWS entries (reused with --keep when it already does)."""
    if engine == "sqlite":
        path = workdir / f"api-bench-{rows}.db"
        url = f"sqlite:///{path}"
        try:
            yield url
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"bp_api_bench_{rows}" if keep else f"bp_api_bench_{os.getpid()}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill(url: str, rows: int) -> None:
    store = open_store(Settings(database=DatabaseSettings(url=url)))
    try:
        with store.engine.connect() as conn:
            have = conn.execute(sa.text("SELECT count(*) FROM suppression")).scalar_one()
        if have == rows:
            print(f"  reusing the database with {rows:,} entries")
            return
        if have:
            raise SystemExit(f"the kept database has {have:,} entries, not {rows:,}: delete it first")
        started = time.perf_counter()
        report = store.import_rows(rows_for(rows))
        assert report.added == rows, report
        if store.engine.dialect.name == "postgresql":
            with store.engine.connect() as conn:
                conn.execute(sa.text("ANALYZE"))
                conn.commit()
        print(f"  imported {rows:,} entries in {time.perf_counter() - started:.1f} s")
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def api_server(url: str, token: str) -> Iterator[str]:
    """``bounce-processor api`` in its own process, with one read token; yields its base URL."""
    tokens = json.dumps([{"name": "bench", "hash": hash_token(token), "scopes": ["read"]}])
    with api_process(url, {"BOUNCE_API__TOKENS": tokens}) as base:
        yield base


@contextmanager
def api_process(url: str, settings: dict[str, str]) -> Iterator[str]:
    """``bounce-processor api`` on ``url`` in its own process, configured by the environment
    variables ``settings`` (no configuration file); yields its base URL once it is ready."""
    port = free_port()
    env = dict(os.environ)
    env.pop("BOUNCE_PROCESSOR_CONFIG", None)
    env.update(settings)
    command = [sys.executable, "-m", "processor", "--log-format", "json", "--log-level", "WARNING", "api",
               "--host", "127.0.0.1", "--port", str(port), "--database", url]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the API server exited: {process.stderr.read() if process.stderr else ''}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API server did not become ready within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"cannot read wrk's time {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    base: str, token: str, rows: int, method: str, *, duration: int, connections: int, seed: int
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"rows": rows, "domains": DOMAINS, "method": method, "token": token, "seed": seed})
    try:
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name, base],
            capture_output=True, text=True, check=True, timeout=duration + 60,
        )
    finally:
        os.unlink(script.name)
    out = result.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if rate is None or p50 is None or p99 is None or total is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    if socket_errors:
        print(f"    wrk socket errors: {socket_errors.group(1)}")
    # 404 (not suppressed) is a correct answer for half the addresses: wrk counts it as non-2xx.
    non_2xx = int(errors.group(1)) if errors else 0
    return {"rps": float(rate.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1)),
            "miss_ratio": non_2xx / int(total.group(1))}


def batch_checks(base: str, token: str, rows: int, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    timings = []
    with SuppressionClient(base, token, batch_timeout=30) as client:
        for n in range(count + 1):
            batch = [address(rng.randrange(2 * rows)) for _ in range(10_000)]
            started = time.perf_counter()
            result = client.check(batch)
            elapsed = (time.perf_counter() - started) * 1000
            assert 4000 < len(result.suppressed) < 6000 and not result.invalid, len(result.suppressed)
            if n:  # the first one warms the connection and the caches
                timings.append(elapsed)
    return timings


def bench_engine(engine: str, args: argparse.Namespace, workdir: Path) -> None:
    token = new_token()
    print(f"{engine}: preparing {args.rows:,} entries")
    sys.stdout.flush()
    with database(engine, args.rows, workdir, args.keep) as url:
        fill(url, args.rows)
        with api_server(url, token) as base:
            figures: dict[str, list[float]] = {}
            for method in ("GET", "HEAD"):
                warm_up = max(2, args.duration // 2)
                run_wrk(base, token, args.rows, method, duration=warm_up, connections=args.connections, seed=99)
                for n in range(args.runs):
                    got = run_wrk(base, token, args.rows, method, duration=args.duration, connections=args.connections,
                              seed=n)
                    for key, value in got.items():
                        figures.setdefault(f"{method}_{key}", []).append(value)
                    print(f"  {engine} {method} run {n + 1}: {got['rps']:,.0f} req/s, p50 {got['p50_ms']:.2f} ms, "
                          f"p99 {got['p99_ms']:.2f} ms, not suppressed {got['miss_ratio']:.0%}")
                    sys.stdout.flush()
            batch_medians = []
            for n in range(args.runs):
                timings = batch_checks(base, token, args.rows, args.batches, seed=n)
                batch_medians.append(statistics.median(timings))
                figures.setdefault("batch_max", []).append(max(timings))
                print(f"  {engine} check run {n + 1}: median {statistics.median(timings):.1f} ms, "
                      f"max {max(timings):.1f} ms over {len(timings)} checks of 10,000")
                sys.stdout.flush()

    def med(key: str) -> float:
        return statistics.median(figures[key])

    runs = f"medians of {args.runs} runs"
    for method in ("GET", "HEAD"):
        print(f"{engine}: {method} /v1/suppressions/{{address}}, {args.rows:,} entries, "
              f"{args.connections} connections, {args.duration} s/run, {runs}: {med(f'{method}_rps'):,.0f} req/s, "
              f"p50 {med(f'{method}_p50_ms'):.2f} ms, p99 {med(f'{method}_p99_ms'):.2f} ms")
    print(f"{engine}: POST /v1/suppressions/check, 10,000 addresses (client to client), {runs}: "
          f"median {statistics.median(batch_medians):.1f} ms, worst {med('batch_max'):.1f} ms")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk's keep-alive connections")
    parser.add_argument("--batches", type=int, default=10, help="10,000-address checks per run")
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite file goes")
    parser.add_argument("--keep", action="store_true", help="keep the databases for the next invocation")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    workdir = args.workdir or Path(tempfile.gettempdir())
    print(f"API benchmark: {os.cpu_count()} CPUs, {args.rows:,} entries, {args.runs} runs of {args.duration} s, "
          f"{args.connections} connections")
    for engine in engines:
        bench_engine(engine, args, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
