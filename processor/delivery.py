"""Suppression-changed events out: the job that posts the outbox's deliveries to their endpoints.

    sender = OutboxSender(store)
    sender.run_once()          # claim what is due, post it, record each try (one call per tick)

The API runs it every ``outbox.interval_seconds`` (``run_forever``); the deliveries themselves
were written by the store in the transaction of each change (processor.store.outbox), so a
restart loses nothing: a delivery claimed by a process that died is tried again once its lease
ends, under the same ``webhook-id``. Requests are signed with Standard Webhooks headers when the
endpoint has a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from starlette.concurrency import run_in_threadpool

from processor import metrics
from processor.config import ConfigError
from processor.store import Store
from processor.store.outbox import Due, webhook_id
from processor.webhooks import signing

__all__ = ["OutboxSender"]

log = structlog.get_logger(__name__)

USER_AGENT = "bounce-processor-outbox/1"
LEASE_MARGIN_SECONDS = 30.0


class OutboxSender:
    """Posts due deliveries; one instance per process (clients and keys made once)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.outbox = store.outbox
        settings = self.outbox.settings
        self._clients: dict[str, httpx.Client] = {}
        self._keys: dict[str, bytes | None] = {}
        self._auth: dict[str, str] = {}
        longest = 0.0
        for name, endpoint in settings.endpoints.items():
            self._clients[name] = httpx.Client(timeout=endpoint.timeout_seconds, follow_redirects=False,
                                               trust_env=False)
            secret = endpoint.signing_secret()
            try:
                self._keys[name] = signing.decode_secret(secret) if secret else None
            except ValueError as exc:
                raise ConfigError(f"outbox.endpoints.{name}.secret: {exc}") from None
            if endpoint.authorization is not None:
                self._auth[name] = endpoint.authorization.get_secret_value()
            longest = max(longest, endpoint.timeout_seconds)
        lease = settings.lease_seconds
        self._lease = timedelta(seconds=lease if lease is not None else longest + LEASE_MARGIN_SECONDS)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def run_once(self) -> int:
        """Claim the due deliveries, post each, record the outcomes; returns how many were tried."""
        if not self.outbox.enabled:
            return 0
        now = datetime.now(UTC)
        limit = self.outbox.settings.batch_size
        claimed = self.store.write(lambda conn: self.outbox.claim(conn, now, self._lease, limit))
        for due in claimed:
            self._deliver(due)
        if claimed:
            self._refresh_gauge()
        return len(claimed)

    def _deliver(self, due: Due) -> None:
        endpoint = self.outbox.endpoints[due.endpoint]
        stamp = int(time.time())
        headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                   "webhook-id": webhook_id(due.id), "webhook-timestamp": str(stamp)}
        key = self._keys.get(due.endpoint)
        if key is not None:
            headers["webhook-signature"] = signing.sign(key, webhook_id(due.id), stamp, due.body)
        if due.endpoint in self._auth:
            headers["authorization"] = self._auth[due.endpoint]
        started = time.perf_counter()
        status_code: int | None = None
        error = ""
        retry_after: float | None = None
        try:
            response = self._clients[due.endpoint].post(endpoint.url, content=due.body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {response.text[:200]}"
                retry_after = _retry_after(response.headers.get("retry-after", ""))
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration = int((time.perf_counter() - started) * 1000)
        outcome = self.store.write(lambda conn: self.outbox.record(
            conn, due, now=datetime.now(UTC), status_code=status_code, duration_ms=duration, error=error,
            retry_after=retry_after))
        metrics.OUTBOX_DELIVERIES.labels(due.endpoint, outcome if outcome != "pending" else "retry").inc()
        if outcome == "delivered":
            log.info("outbox.delivered", endpoint=due.endpoint, delivery=due.id, address=due.address, ms=duration)
        else:
            log.warning("outbox.failed", endpoint=due.endpoint, delivery=due.id, address=due.address,
                        attempt=due.attempts + 1, outcome=outcome, error=error[:200])

    def _refresh_gauge(self) -> None:
        counts = self.store.write(self.outbox.counts)
        for (endpoint, status), count in counts.items():
            metrics.OUTBOX_BACKLOG.labels(endpoint, status).set(count)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """``run_once`` every ``interval_seconds`` until ``stop`` is set; failures are logged, never fatal."""
        interval = self.outbox.settings.interval_seconds
        while not stop.is_set():
            try:
                tried = await run_in_threadpool(self.run_once)
            except Exception as exc:
                log.error("outbox.job_failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                tried = 0
            if tried:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def _retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
