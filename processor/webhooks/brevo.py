"""Brevo (Sendinblue) transactional webhooks: one event per request (or an array, in batched
mode). No signature: HTTP Basic credentials or a bearer token, required. Brevo gives no event
id: message-id, event, address and ``ts_epoch`` together identify one."""

from __future__ import annotations

from typing import Any, ClassVar

from processor.records import Event, EventKind, OriginalMessage
from processor.webhooks.base import (
    CredentialsReceiver,
    Parsed,
    WebhookRequest,
    json_body,
    parse_objects,
    scalar,
    smtp_evidence,
)

FAILURES = frozenset({"hard_bounce", "soft_bounce", "blocked", "invalid_email"})
COMPLAINTS = frozenset({"spam", "complaint"})


class BrevoReceiver(CredentialsReceiver):
    provider: ClassVar[str] = "brevo"

    def parse(self, request: WebhookRequest) -> Parsed:
        body = json_body(request)
        return parse_objects(body if isinstance(body, list) else [body], "a Brevo event", brevo_event)


def brevo_event(item: dict[str, Any]) -> Event | None:
    name = scalar(item.get("event"))
    recipient = scalar(item.get("email"))
    message_id = scalar(item.get("message-id"))
    stamp = scalar(item.get("ts_epoch")) or scalar(item.get("ts_event")) or scalar(item.get("ts"))
    common: dict[str, Any] = {
        "recipient": recipient, "mta": "brevo", "provider": "brevo", "provider_category": name.lower(),
        "provider_event_id": f"{message_id}|{name}|{recipient}|{stamp}",
        "original": OriginalMessage(message_id=message_id.strip("<>"), subject=scalar(item.get("subject"))),
    }
    status, reply, diagnostic = smtp_evidence(scalar(item.get("reason")))
    evidence: dict[str, Any] = {"status": status, "reply_code": reply, "diagnostic": diagnostic}
    if name in FAILURES:
        return Event(kind=EventKind.FAILURE, dsn_action="failed", **evidence, **common)
    if name == "deferred":
        return Event(kind=EventKind.DELAY, dsn_action="delayed", **evidence, **common)
    if name in COMPLAINTS:
        return Event(kind=EventKind.COMPLAINT, feedback_type="abuse", **common)
    return None
