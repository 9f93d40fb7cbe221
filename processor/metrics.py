"""Prometheus metrics, defined once for the whole process (daemon, API, policy service).

The daemon and the policy service increment them; ``GET /metrics`` exposes them. Names follow
Prometheus conventions: a ``bounce_processor_`` prefix, ``_total`` for counters, base units.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_PROCESSED = Counter(
    "bounce_processor_messages_processed_total",
    "Messages taken from a mailbox, by outcome (processed, duplicate, quarantined, failed).",
    ["mailbox", "outcome"],
)
EVENTS = Counter(
    "bounce_processor_events_total",
    "Classified events, by bounce type and reason.",
    ["bounce_type", "reason"],
)
SUPPRESSIONS = Counter(
    "bounce_processor_suppressions_total",
    "Suppression changes, by source (bounce, complaint, unsubscribe, manual, import) and action (add, remove).",
    ["source", "action"],
)
IMAP_ERRORS = Counter(
    "bounce_processor_imap_errors_total",
    "IMAP connection and command errors, by mailbox.",
    ["mailbox"],
)
ACTIVE_SUPPRESSIONS = Gauge(
    "bounce_processor_active_suppressions",
    "Suppression entries currently in force (refreshed by housekeeping).",
)
API_LATENCY = Histogram(
    "bounce_processor_api_request_duration_seconds",
    "HTTP API request latency, by method, route template and status code.",
    ["method", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
POLICY_REQUESTS = Counter(
    "bounce_processor_policy_requests_total",
    "Postfix policy delegation requests, by answer (REJECT, DEFER, DUNNO, error).",
    ["answer"],
)
API_HEADER_TIMEOUTS = Counter(
    "bounce_processor_api_header_timeouts_total",
    "HTTP API connections closed because their request head was not complete in time.",
)
API_UNAVAILABLE = Counter(
    "bounce_processor_api_unavailable_total",
    "HTTP API requests answered 503 because the database could not be reached.",
)
WEBHOOK_REQUESTS = Counter(
    "bounce_processor_webhook_requests_total",
    "Provider webhook requests, by webhook name and outcome (accepted, or why refused: bad_signature, "
    "stale, replayed, unknown_topic, malformed, bad_credentials, ...).",
    ["webhook", "outcome"],
)
WEBHOOK_EVENTS = Counter(
    "bounce_processor_webhook_events_total",
    "Provider events, by webhook name and outcome (recorded, duplicate, ignored).",
    ["webhook", "outcome"],
)
OUTBOX_DELIVERIES = Counter(
    "bounce_processor_outbox_deliveries_total",
    "Tries of suppression-changed events, by endpoint and outcome (delivered, retry, dead).",
    ["endpoint", "outcome"],
)
OUTBOX_BACKLOG = Gauge(
    "bounce_processor_outbox_backlog",
    "Outbox deliveries by endpoint and status (pending, delivered, dead), refreshed after each run.",
    ["endpoint", "status"],
)
