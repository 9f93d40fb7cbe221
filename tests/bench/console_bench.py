"""Benchmark of the web console's pages on a big list; prints figures, asserts nothing.

    python tests/bench/console_bench.py                            # 1,000,000 entries, 2,000,000 events
    python tests/bench/console_bench.py --entries 100000 --events 200000 --engine sqlite --loads 20

A database is filled with bulk inserts (COPY on PostgreSQL, executemany on SQLite): ENTRIES
suppression entries, EVENTS report events over the last 90 days (hard, soft, deferrals, complaints,
auto-replies, some undetermined; 5,000 recipient domains, 20 sending domains), their daily counts
(as the recording path keeps them) and 90 days of sent counts. Then the API with the console is
served by uvicorn on a loopback port and each page is loaded LOADS times by a signed-in httpx
client, one request at a time: median and p99 per page. The baseline in the same run is the JSON
``GET /v1/stats`` over the same 30 days, which counts events by scanning ``event`` (what the
overview would cost without the daily counts). "overview (first)" is the first overview load,
which also counts the entries in force by reason (then cached for a minute).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from processor.api.auth import hash_token, new_token
from processor.config import ApiSettings, ApiToken, DatabaseSettings, Settings
from processor.store import Store, open_store
from processor.store.daily import DEFERRAL, day_of
from tests.console.helpers import served
from tests.databases import throwaway_postgres

RCPT_DOMAINS = 5000
SENDERS = [f"brand{n}.example" for n in range(20)]
TOKEN = new_token()
CHUNK = 20_000
BASELINE_TIMEOUT = 300.0
KINDS = [  # (kind, bounce_type, reason, rule, weight)
    ("failure", "hard", "userunknown", "userunknown-confirmed", 55),
    ("failure", "soft", "mailboxfull", "mailboxfull", 12),
    ("delay", "soft", "expired", "delayed", 15),
    ("complaint", "complaint", "abuse", "arf-abuse", 5),
    ("auto_reply", "auto_reply", "vacation", "auto-reply", 8),
    ("failure", "undetermined", "undefined", "", 5),
]


def address(i: int) -> str:
    return f"user{i}@domain{i % RCPT_DOMAINS}.example"


def fill(store: Store, entries: int, events: int) -> dict[str, float]:
    """Bulk-load the database; returns seconds per part."""
    timings: dict[str, float] = {}
    rnd = random.Random(16)
    now = datetime.now(UTC).replace(microsecond=0)
    ts = store.database.ts
    raw = store.engine.raw_connection()
    begin = "BEGIN" if store.engine.dialect.name == "sqlite" else "SELECT 1"  # pysqlite runs in autocommit here

    def bulk(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        cursor.execute(begin)
        store.database.bulk_insert(cursor, table, columns, rows)
        raw.commit()

    try:
        cursor = raw.cursor()
        start = time.perf_counter()
        columns = ("address", "domain", "scope", "source", "reason", "bounce_type", "first_seen", "last_seen",
                   "expires_at", "event_count", "note")
        for base in range(0, entries, CHUNK):
            rows = []
            for i in range(base, min(base + CHUNK, entries)):
                seen = ts(now - timedelta(seconds=rnd.randrange(90 * 86400)))
                reason = ("userunknown", "abuse", "manual", "bounced")[i % 4 if i % 10 else 0]
                rows.append((address(i), f"domain{i % RCPT_DOMAINS}.example", "global", "bounce", reason, "hard",
                             seen, seen, None, 1, ""))
            bulk("suppression", columns, rows)
        timings["entries"] = time.perf_counter() - start

        start = time.perf_counter()
        weights = [k[4] for k in KINDS]
        counts: Counter[tuple[str, str, str, str]] = Counter()
        event_columns = ("kind", "address", "domain", "recipient", "scope", "mailbox", "original_from",
                         "status", "reply_code", "diagnostic", "reason", "bounce_type", "rule_id", "decision",
                         "counted", "explanation", "actor", "received_at", "recorded_at", "original_message_id",
                         "dsn_action", "smtp_command", "diagnostic_type", "remote_mta", "reporting_mta", "mta",
                         "feedback_type")
        for base in range(0, events, CHUNK):
            rows = []
            for n in range(base, min(base + CHUNK, events)):
                kind, bounce_type, reason, rule, _ = rnd.choices(KINDS, weights)[0]
                i = rnd.randrange(entries * 2)
                rcpt = address(i)
                domain = f"domain{i % RCPT_DOMAINS}.example"
                sender = SENDERS[n % len(SENDERS)]
                at = now - timedelta(seconds=rnd.randrange(90 * 86400))
                status = "5.1.1" if bounce_type == "hard" else "4.2.2"
                rows.append((kind, rcpt, domain, rcpt, "global", "bounces/INBOX", f"news@{sender}", status,
                             status[0] + "50", f"{status[0]}50 {status} mailbox problem", reason, bounce_type, rule,
                             "suppress" if bounce_type == "hard" else "count", False, "", "", ts(at), ts(at),
                             f"<{n}@{sender}>", "delayed" if kind == "delay" else "failed", "RCPT", "smtp",
                             "mx.example", "mta.example", "rfc3464", ""))
                day = day_of(at)
                for category in (bounce_type, DEFERRAL) if kind == "delay" else (bounce_type,):
                    counts[("rcpt", category, day, domain)] += 1
                    counts[("sender", category, day, sender)] += 1
                    counts[("rule", category, day, rule)] += 1
            bulk("event", event_columns, rows)
        timings["events"] = time.perf_counter() - start

        start = time.perf_counter()
        rows = [(*key, n) for key, n in counts.items()]
        for base in range(0, len(rows), CHUNK):
            bulk("daily_count", ("dimension", "category", "day", "key", "n"), rows[base : base + CHUNK])
        sent_rows = [((now - timedelta(days=d)).strftime("%Y-%m-%d"), sender, 40_000 + 1000 * (d % 7), ts(now))
                     for d in range(90) for sender in SENDERS[:15]]
        bulk("sent_count", ("day", "sender_domain", "sent", "updated_at"), sent_rows)
        timings["daily counts"] = time.perf_counter() - start
        cursor.close()
    finally:
        raw.close()
    start = time.perf_counter()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    timings["analyze"] = time.perf_counter() - start
    return timings


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(client: httpx.Client, paths: list[str], loads: int) -> tuple[float, float, int]:
    times = []
    status = 0
    for n in range(loads):
        path = paths[n % len(paths)]
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        status = max(status, answer.status_code)
    return statistics.median(times), percentile(times, 0.99), status


def run(engine: str, url: str, entries: int, events: int, loads: int, *, baseline_loads: int) -> None:
    settings = Settings(database=DatabaseSettings(url=url), api=ApiSettings(
        port=0, tokens=[ApiToken(name="bench", hash=hash_token(TOKEN), scopes=["ui", "read", "write"])]))
    store = open_store(settings)
    try:
        for part, seconds in fill(store, entries, events).items():
            print(f"{engine}: built {part} in {seconds:.1f} s", flush=True)
        with served(settings, store) as base, httpx.Client(base_url=base, timeout=BASELINE_TIMEOUT) as client:
            client.post("/ui/login", data={"token": TOKEN})
            for path in ("/ui/", "/ui/?days=90"):
                start = time.perf_counter()
                first = client.get(path)
                print(f"{engine}: first load of {path} (sums the top domains and the entries by reason, then "
                      f"cached) {(time.perf_counter() - start) * 1000:.0f} ms, status {first.status_code}", flush=True)
            rnd = random.Random(7)
            addresses = [f"/ui/address?a={address(rnd.randrange(entries))}" for _ in range(loads)]
            domains = [f"/ui/search?q=domain{rnd.randrange(RCPT_DOMAINS)}.example" for _ in range(loads)]
            since = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
            pages = {
                "overview 30 days": ["/ui/"],
                "overview 90 days": ["/ui/?days=90"],
                "address page": addresses,
                "domain search": domains,
                "review": ["/ui/review"],
                "mailboxes": ["/ui/mailboxes"],
            }
            for name, paths in pages.items():
                median, p99, status = measure(client, paths, loads)
                print(f"{engine}: {name:18} median {median:7.1f} ms  p99 {p99:7.1f} ms  ({loads} loads, "
                      f"worst status {status})", flush=True)
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            try:
                median, p99, status = measure(client, [f"/v1/stats?since={since}"], baseline_loads)
            except httpx.TimeoutException:
                print(f"{engine}: baseline GET /v1/stats (30 days, scans event)  no answer within "
                      f"{BASELINE_TIMEOUT:.0f} s", flush=True)
            else:
                print(f"{engine}: baseline GET /v1/stats (30 days, scans event)  median {median:7.1f} ms  p99 "
                      f"{p99:7.1f} ms  ({baseline_loads} loads, worst status {status})", flush=True)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--baseline-loads", type=int, default=3, help="loads of the (slow) baseline")
    args = parser.parse_args()
    print(f"console pages: {args.entries:,} entries, {args.events:,} events, {args.loads} loads per page", flush=True)
    if args.engine in ("postgresql", "both"):
        with throwaway_postgres("bp_console_bench") as url:
            run("postgresql", url, args.entries, args.events, args.loads, baseline_loads=args.baseline_loads)
    if args.engine in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as workdir:
            run("sqlite", f"sqlite:///{workdir}/bench.db", args.entries, args.events, args.loads,
                baseline_loads=args.baseline_loads)


if __name__ == "__main__":
    main()
