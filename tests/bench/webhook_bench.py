"""Benchmark of the provider webhook receivers, end to end; prints figures, asserts nothing.

    python tests/bench/webhook_bench.py                          # 20 batches of 1,000, 300 SES, 3 runs
    python tests/bench/webhook_bench.py --batches 5 --ses 100 --runs 3

``bounce-processor api`` runs in its own process on a fresh SQLite file (as in production: one
process, uvicorn), with a SendGrid receiver (ECDSA key made here) and an SES receiver whose SNS
certificate host is an HTTPS server in this process (a CA made here; the certificate is fetched
once, then cached). This process is the provider:

- SendGrid: batches of 1,000 signed events (bounces, blocks, deferrals, spam reports, each for a
  new address), posted one after the other: events/s from the first byte sent to the last answer,
  every event verified, parsed, classified and committed (issue 15 target: >= 5,000 events/s);
- SES: single signed SNS notifications (SignatureVersion 2, one bounced recipient), one at a
  time: latency p50 / p99 of each POST.

Baseline, in the same invocation: the same SendGrid events recorded straight into a store
(``Store.record_messages``, after the same classification), without HTTP or signature checks:
what the HTTP layer and the checks cost on top of the store. Figures are medians over ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from processor.classify import load_classifier
from processor.config import DatabaseSettings, Settings, WebhookSettings
from processor.store import MessageRef, open_store
from processor.webhooks import RECEIVERS, WebhookRequest, ledger_key
from tests.bench.api_bench import api_process
from tests.servers import generate_tls
from tests.webhooks.payloads import TOPIC, Keys, rsa_certificate, sendgrid_headers, sns_envelope

CERT_PATH = "/SimpleNotificationService-bench.pem"
KINDS = [
    {"event": "bounce", "type": "bounce", "status": "5.1.1",
     "reason": "550 5.1.1 <{a}>: Recipient address rejected: User unknown"},
    {"event": "bounce", "type": "blocked", "status": "5.7.1",
     "reason": "554 5.7.1 Service unavailable; client host blocked"},
    {"event": "deferred", "response": "451 4.7.1 Greylisted, try again later"},
    {"event": "spamreport"},
]


def sendgrid_batch(run: int, batch: int, size: int) -> bytes:
    events = []
    for i in range(size):
        address = f"r{run}-b{batch}-{i}@example{i % 97}.net"
        template = KINDS[i % len(KINDS)]
        event: dict[str, Any] = {k: (v.format(a=address) if isinstance(v, str) else v) for k, v in template.items()}
        event.update({"email": address, "timestamp": 1775553000 + i, "sg_event_id": f"ev-{run}-{batch}-{i}",
                      "sg_message_id": f"msg-{run}-{batch}-{i}.filter",
                      "smtp-id": f"<m{run}.{batch}.{i}@sender.example>"})
        events.append(event)
    return json.dumps(events).encode()


def ses_message(run: int, i: int) -> dict[str, Any]:
    address = f"ses-{run}-{i}@example.org"
    return {"notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "feedbackId": f"fb-{run}-{i}",
                       "timestamp": "2026-04-07T09:12:41.000Z",
                       "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                              "diagnosticCode": f"smtp; 550 5.1.1 <{address}>: user unknown"}]},
            "mail": {"messageId": f"ses-msg-{run}-{i}", "source": "letters@sender.example", "destination": [address]}}


@contextmanager
def cert_host(keys: Keys, workdir: Path) -> Iterator[tuple[str, Path]]:
    tls = generate_tls(workdir / "tls")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(keys.sns_cert)))
            self.end_headers()
            self.wfile.write(keys.sns_cert)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://localhost:{server.server_address[1]}{CERT_PATH}", tls.ca_cert
    finally:
        server.shutdown()


@contextmanager
def api_server(url: str, webhooks: dict[str, Any]) -> Iterator[str]:
    """``bounce-processor api`` in its own process, with these webhook receivers; yields its base URL."""
    with api_process(url, {"BOUNCE_WEBHOOKS": json.dumps(webhooks)}) as base:
        yield base


def baseline(workdir: Path, run: int, batches: int, size: int) -> float:
    """events/s recording the same events straight into a store (classification included)."""
    store = open_store(Settings(database=DatabaseSettings(url=f"sqlite:///{workdir / f'base-{run}.db'}")))
    classifier = load_classifier()
    receiver = RECEIVERS["sendgrid"]("sendgrid", WebhookSettings())
    bodies = [sendgrid_batch(run, b, size) for b in range(batches)]
    started = time.perf_counter()
    for body in bodies:
        events = receiver.parse(WebhookRequest(body, {}, time.time())).events
        items = [(MessageRef("webhook:sendgrid", ledger_key("sendgrid", e.provider_event_id, e.recipient)),
                  [classifier.classify(e)]) for e in events]
        store.record_messages(items, advance_mailbox=False)
    elapsed = time.perf_counter() - started
    store.close()
    return batches * size / elapsed


def one_run(run: int, args: argparse.Namespace, workdir: Path, keys: Keys, *, cert_url: str,
            ca: Path) -> dict[str, float]:
    webhooks = {"sendgrid": {"secret": keys.sendgrid_public},
                "ses": {"topic_arns": [TOPIC], "cert_host_pattern": r"localhost:\d+", "cert_ca_file": str(ca)}}
    url = f"sqlite:///{workdir / f'api-{run}.db'}"
    bodies = [sendgrid_batch(run, b, args.batch_size) for b in range(args.batches)]
    with api_server(url, webhooks) as base, httpx.Client(base_url=base, timeout=60) as client:
        warm = sns_envelope(ses_message(run, -1), cert_url, key=keys.sns_key)
        client.post("/v1/webhooks/ses", content=json.dumps(warm).encode()).raise_for_status()
        started = time.perf_counter()
        for body in bodies:
            headers = sendgrid_headers(body, keys.sendgrid_key)
            response = client.post("/v1/webhooks/sendgrid", content=body, headers=headers)
            response.raise_for_status()
            assert response.json()["recorded"] == args.batch_size, response.text
        events_per_s = args.batches * args.batch_size / (time.perf_counter() - started)
        latencies = []
        for i in range(args.ses):
            body = json.dumps(sns_envelope(ses_message(run, i), cert_url, key=keys.sns_key)).encode()
            sent = time.perf_counter()
            client.post("/v1/webhooks/ses", content=body).raise_for_status()
            latencies.append((time.perf_counter() - sent) * 1000)
    latencies.sort()
    return {"events_per_s": events_per_s, "ses_p50_ms": latencies[len(latencies) // 2],
            "ses_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "baseline_events_per_s": baseline(workdir, run, args.batches, args.batch_size)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="SendGrid batches per run")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--ses", type=int, default=300, help="single SES notifications per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    key, cert = rsa_certificate()
    keys = Keys(sns_key=key, sns_cert=cert)
    with tempfile.TemporaryDirectory(prefix="bp-webhook-bench-") as tmp:
        workdir = Path(tmp)
        with cert_host(keys, workdir) as (cert_url, ca):
            results = [one_run(run, args, workdir, keys, cert_url=cert_url, ca=ca) for run in range(args.runs)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(f"webhooks on SQLite, {args.runs} runs (medians); {args.batches} SendGrid batches of {args.batch_size}, "
          f"{args.ses} SES notifications per run")
    each = ", ".join(f"{r['events_per_s']:,.0f}" for r in results)
    print(f"  SendGrid end to end (HTTP, ECDSA, parse, classify, store): {med('events_per_s'):,.0f} events/s "
          f"(runs: {each})")
    print(f"  baseline, same events straight into Store.record_messages: {med('baseline_events_per_s'):,.0f} events/s")
    print(f"  SES single notification (SNS v2 signature, cached certificate): p50 {med('ses_p50_ms'):.1f} ms, "
          f"p99 {med('ses_p99_ms'):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
