"""Suppression-changed events out: written with the change, delivered signed, in order per
address, retried with backoff, dead after the configured tries, and never lost across a restart."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from processor.config import DatabaseSettings, OutboxEndpoint, OutboxSettings, Settings
from processor.delivery import OutboxSender
from processor.records import BounceType, Event, EventKind, Verdict
from processor.store import MessageRef, Store, open_store
from processor.webhooks import signing
from tests.conftest import PROJECT
from tests.webhooks.receiver import Received, receiver

SECRET = "whsec_" + base64.b64encode(b"outbox-test-secret-32-bytes-long").decode()


def outbox_settings(url: str, **endpoints: OutboxEndpoint) -> OutboxSettings:
    return OutboxSettings(endpoints=endpoints, retry_delays_seconds=[0.05, 0.1], interval_seconds=0.05)


def open_with(db_url: str, outbox: OutboxSettings) -> Store:
    return open_store(Settings(database=DatabaseSettings(url=db_url), outbox=outbox))


def deliveries(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, endpoint, address, change, status, attempts, body "
                                    "FROM outbox_delivery ORDER BY id")).mappings().all()
    return [dict(r) for r in rows]


def hard_bounce(address: str) -> Verdict:
    return Verdict(Event(kind=EventKind.FAILURE, recipient=address, status="5.1.1"), "userunknown", BounceType.HARD,
                   "test")


@pytest.fixture
def outbox_store(db_url: str) -> Iterator[Store]:
    endpoints = {"app": OutboxEndpoint(url="http://127.0.0.1:9/hook", secret=SECRET),
                 "listmonk": OutboxEndpoint(url="http://127.0.0.1:9/webhooks/bounce", format="listmonk")}
    store = open_with(db_url, outbox_settings(db_url, **endpoints))
    yield store
    store.close()


def test_each_change_writes_its_deliveries_in_its_transaction(outbox_store: Store) -> None:
    """Added (pipeline and by hand), removed and expired each write one row per endpoint that
    hears of them; a bounce on an address already suppressed is no change and writes none."""
    store = outbox_store
    store.record_message(MessageRef("box", "h1"), [hard_bounce("a@example.org")])
    store.record_message(MessageRef("box", "h2"), [hard_bounce("a@example.org")])
    store.add("b@example.org", reason="manual", expires_at=datetime.now(UTC) + timedelta(seconds=1))
    store.remove("a@example.org")
    assert store.purge_expired(now=datetime.now(UTC) + timedelta(seconds=5)) == 1
    got = [(d["endpoint"], d["address"], d["change"]) for d in deliveries(store)]
    assert got == [
        ("app", "a@example.org", "added"), ("listmonk", "a@example.org", "added"),
        ("app", "b@example.org", "added"), ("listmonk", "b@example.org", "added"),
        ("app", "a@example.org", "removed"),
        ("app", "b@example.org", "expired"),
    ]
    listmonk = json.loads(deliveries(store)[1]["body"])
    assert (listmonk["email"], listmonk["type"], listmonk["source"]) == ("a@example.org", "hard", "bounce-processor")
    generic = json.loads(deliveries(store)[0]["body"])
    assert generic["type"] == "suppression.added"
    assert generic["data"]["reason"] == "userunknown"


def test_imported_entries_are_announced(outbox_store: Store) -> None:
    """An import announces each address it suppresses (new, or expired before) in the import's
    transaction; an address already suppressed is no change and announces nothing."""
    from processor.store import ImportRow

    store = outbox_store
    store.add("kept@example.org", reason="manual")
    report = store.import_rows([ImportRow("new@example.org", 1, reason="userunknown", bounce_type="hard",
                                          source="import"),
                                ImportRow("kept@example.org", 2, reason="asked", source="import")])
    assert (report.added, report.already_suppressed) == (1, 1)
    got = [(d["endpoint"], d["address"], d["change"]) for d in deliveries(store)]
    assert got == [("app", "kept@example.org", "added"), ("listmonk", "kept@example.org", "added"),
                   ("app", "new@example.org", "added"), ("listmonk", "new@example.org", "added")]
    assert json.loads(deliveries(store)[3]["body"])["type"] == "hard"


def test_no_endpoint_no_outbox_rows(db_url: str) -> None:
    """Without endpoints a change writes no outbox row."""
    store = open_with(db_url, OutboxSettings())
    try:
        store.add("c@example.org")
        assert deliveries(store) == []
    finally:
        store.close()


def _verify(received: Received) -> None:
    signing.verify([signing.decode_secret(SECRET)], received.webhook_id, received.timestamp, received.signature,
                   received.body, now=time.time())


def test_failing_receiver_then_recovery_delivers_everything_in_order_signed(db_url: str) -> None:
    """A receiver that fails three times then recovers gets every event, in order per address,
    each signed, each retry under the delivery's own webhook-id."""
    with receiver(fail_first=3) as endpoint:
        store = open_with(db_url, outbox_settings(db_url, app=OutboxEndpoint(url=endpoint.url, secret=SECRET)))
        try:
            store.add("x@example.org")
            store.add("y@example.org")
            store.remove("x@example.org")
            store.add("x@example.org", reason="again")
            sender = OutboxSender(store)
            deadline = time.monotonic() + 20
            while len(endpoint.delivered()) < 4 and time.monotonic() < deadline:
                sender.run_once()
                time.sleep(0.02)
            sender.close()
            got = endpoint.delivered()
            assert len(got) == 4
            for item in endpoint.requests:
                _verify(item)
            by_address: dict[str, list[str]] = {}
            for item in got:
                body = json.loads(item.body)
                by_address.setdefault(body["data"]["address"], []).append(body["type"])
            assert by_address == {"x@example.org": ["suppression.added", "suppression.removed", "suppression.added"],
                                  "y@example.org": ["suppression.added"]}
            ids_of_body: dict[bytes, set[str]] = {}
            for item in endpoint.requests:
                ids_of_body.setdefault(item.body, set()).add(item.webhook_id)
            assert all(len(ids) == 1 for ids in ids_of_body.values())
            assert len(endpoint.requests) == 7
            assert {d["status"] for d in deliveries(store)} == {"delivered"}
        finally:
            store.close()


def test_dead_letter_after_max_attempts_does_not_block_the_address(db_url: str) -> None:
    """A delivery failing max_attempts times is dead (kept, counted); later ones still go."""
    from prometheus_client import REGISTRY

    with receiver(fail_always=True) as endpoint:
        settings = outbox_settings(db_url, sink=OutboxEndpoint(url=endpoint.url, max_attempts=2))
        store = open_with(db_url, settings)
        try:
            store.add("d@example.org")
            sender = OutboxSender(store)
            before = REGISTRY.get_sample_value("bounce_processor_outbox_deliveries_total",
                                               {"endpoint": "sink", "outcome": "dead"}) or 0
            deadline = time.monotonic() + 10
            while deliveries(store)[0]["status"] != "dead" and time.monotonic() < deadline:
                sender.run_once()
                time.sleep(0.05)
            assert deliveries(store)[0]["status"] == "dead"
            assert deliveries(store)[0]["attempts"] == 2
            assert len(endpoint.requests) == 2
            assert REGISTRY.get_sample_value("bounce_processor_outbox_deliveries_total",
                                             {"endpoint": "sink", "outcome": "dead"}) == before + 1
            endpoint.fail_always = False
            store.remove("d@example.org")
            sender.run_once()
            assert [json.loads(r.body)["type"] for r in endpoint.delivered()] == ["suppression.removed"]
            sender.close()
        finally:
            store.close()


def _api_process(config: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ}
    env.pop("BOUNCE_PROCESSOR_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "processor", "--config", str(config), "--log-format", "json", "api",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _wait_ready(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read() if process.stderr else "the API exited")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the API did not become ready")


def test_killing_the_api_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL while a delivery is in flight: after a restart every change arrives, and an event
    that arrives twice carries the same webhook-id both times."""
    from tests.api.test_api_server import _free_port

    with receiver(delay_seconds=0.6) as endpoint:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "kill.db"}"\n'
            "[outbox]\ninterval_seconds = 0.05\nlease_seconds = 1\nretry_delays_seconds = [0.1]\n"
            f'[outbox.endpoints.app]\nurl = "{endpoint.url}"\nsecret = "{SECRET}"\ntimeout_seconds = 5\n'
        )
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        addresses = [f"k{i}-{secrets.token_hex(3)}@example.org" for i in range(6)]
        process = _api_process(config, port)
        try:
            _wait_ready(base, process)
            for address in addresses:
                answer = httpx.put(f"{base}/v1/suppressions/{address}", json={"reason": "manual"})
                assert answer.status_code in (200, 201)
            deadline = time.monotonic() + 20
            while len(endpoint.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # the next delivery is now in flight (the receiver is slow)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert len(endpoint.delivered()) < len(addresses)
        endpoint.delay_seconds = 0.0
        process = _api_process(config, port)
        try:
            _wait_ready(base, process)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                delivered = {json.loads(r.body)["data"]["address"] for r in endpoint.delivered()}
                if delivered >= set(addresses):
                    break
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)
        assert {json.loads(r.body)["data"]["address"] for r in endpoint.delivered()} == set(addresses)
        ids_of_body: dict[bytes, set[str]] = {}
        for item in endpoint.requests:
            _verify(item)
            ids_of_body.setdefault(item.body, set()).add(item.webhook_id)
        assert all(len(ids) == 1 for ids in ids_of_body.values())


