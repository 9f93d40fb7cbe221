"""From an HTTP request to stored events: verify, parse, classify, guard, store (one transaction
per request), answer. The API's route is a thin shell around ``WebhookService.handle``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from processor import metrics
from processor.classify import Classifier
from processor.config import Settings, WebhookSettings
from processor.records import Action, BounceType, EventKind, Verdict
from processor.store import MessageRef, RecordResult, Store
from processor.webhooks.base import Receiver, WebhookError, WebhookRequest
from processor.webhooks.brevo import BrevoReceiver
from processor.webhooks.mailgun import MailgunReceiver
from processor.webhooks.postmark import PostmarkReceiver
from processor.webhooks.sendgrid import SendgridReceiver
from processor.webhooks.ses import SesReceiver
from processor.webhooks.sparkpost import SparkpostReceiver
from processor.webhooks.standard import StandardReceiver

log = structlog.get_logger(__name__)

RECEIVERS: dict[str, type[Receiver]] = {
    "ses": SesReceiver,
    "sendgrid": SendgridReceiver,
    "mailgun": MailgunReceiver,
    "postmark": PostmarkReceiver,
    "sparkpost": SparkpostReceiver,
    "brevo": BrevoReceiver,
    "standard": StandardReceiver,
}
LEDGER_PREFIX = "webhook:"
"""Events from a webhook are ledgered under the mailbox name ``webhook:<name>``."""
_SUPPRESSING = frozenset({BounceType.HARD, BounceType.SOFT, BounceType.COMPLAINT})
_BOUNCE_KINDS = frozenset({EventKind.FAILURE, EventKind.DELAY})


@dataclass(frozen=True, slots=True)
class Answer:
    """The HTTP answer to one webhook request."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def build_receivers(configured: Mapping[str, WebhookSettings]) -> dict[str, Receiver]:
    """One receiver per enabled webhook (keys parsed, patterns compiled: once, at start)."""
    return {name: RECEIVERS[cfg.provider_for(name)](name, cfg) for name, cfg in configured.items() if cfg.enabled}


def ledger_key(provider: str, event_id: str, recipient: str) -> str:
    """The ledger's content hash of one provider event: the same event delivered again is a duplicate."""
    return hashlib.sha256(f"{provider}\0{event_id}\0{recipient.strip().lower()}".encode()).hexdigest()


def _may_suppress(verdict: Verdict) -> bool:
    if verdict.action is not None:
        return verdict.action in (Action.SUPPRESS, Action.COUNT)
    return verdict.bounce_type in _SUPPRESSING


class WebhookService:
    """The configured receivers and the pipeline behind them. Thread-safe (the API calls it from
    its thread pool)."""

    def __init__(self, settings: Settings, store: Store, classifier: Classifier) -> None:
        self.store = store
        self.classifier = classifier
        self.receivers = build_receivers(settings.webhooks)

    def known(self, name: str) -> bool:
        return name in self.receivers

    def handle(self, name: str, body: bytes, headers: Mapping[str, str], received_at: float | None = None) -> Answer:
        receiver = self.receivers.get(name)
        if receiver is None:
            return Answer(404, {"error": "not_found", "message": f"no webhook named {name!r} is configured"})
        request = WebhookRequest(body, {k.lower(): v for k, v in headers.items()},
                                 time.time() if received_at is None else received_at)
        try:
            receiver.verify(request)
            parsed = receiver.parse(request)
        except WebhookError as exc:
            metrics.WEBHOOK_REQUESTS.labels(name, exc.code).inc()
            log.warning("webhook.refused", webhook=name, provider=receiver.provider, status=exc.status,
                        error=exc.code, message=exc.message, bytes=len(body))
            return Answer(exc.status, {"error": exc.code, "message": exc.message}, exc.headers)
        try:
            results = self._record(name, receiver, parsed.events)
        except Exception:
            forget = getattr(receiver, "forget", None)
            if forget is not None:
                forget(request)
            metrics.WEBHOOK_REQUESTS.labels(name, "failed").inc()
            raise
        recorded = sum(1 for r in results if not r.duplicate)
        duplicates = len(results) - recorded
        ignored = sum(parsed.ignored.values())
        metrics.WEBHOOK_REQUESTS.labels(name, "accepted").inc()
        for outcome, count in (("recorded", recorded), ("duplicate", duplicates), ("ignored", ignored)):
            if count:
                metrics.WEBHOOK_EVENTS.labels(name, outcome).inc(count)
        log.info("webhook.accepted", webhook=name, provider=receiver.provider, recorded=recorded,
                 duplicates=duplicates, ignored=parsed.ignored or None, note=parsed.note or None)
        answer: dict[str, Any] = {"recorded": recorded, "duplicates": duplicates, "ignored": ignored}
        if parsed.note:
            answer["note"] = parsed.note
        return Answer(200, answer)

    def _record(self, name: str, receiver: Receiver, events: list[Any]) -> list[RecordResult]:
        if not events:
            return []
        kind = receiver.settings.kind
        mailbox = LEDGER_PREFIX + name
        items: list[tuple[MessageRef, list[Verdict]]] = []
        for event in events:
            verdict = self.classifier.classify(event)
            if _may_suppress(verdict) and (
                (kind == "bounce" and event.kind is EventKind.COMPLAINT)
                or (kind == "fbl" and event.kind in _BOUNCE_KINDS)
            ):
                verdict = replace(verdict, action=Action.IGNORE)
            ref = MessageRef(mailbox, ledger_key(receiver.provider, event.provider_event_id, event.recipient))
            items.append((ref, [verdict]))
        results = self.store.record_messages(items, advance_mailbox=False)
        for result in results:
            for decision in result.decisions:
                metrics.EVENTS.labels(str(decision.verdict.bounce_type), decision.verdict.reason).inc()
                if decision.action is Action.SUPPRESS:
                    metrics.SUPPRESSIONS.labels(decision.source or "bounce", "add").inc()
        return results
