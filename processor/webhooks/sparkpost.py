"""SparkPost / Bird webhooks: batched arrays of ``{"msys": {"<class>": {...}}}``. No signature:
HTTP Basic credentials or a bearer token, required. ``bounce_class`` is SparkPost's category."""

from __future__ import annotations

from typing import Any, ClassVar

from processor.records import Event, EventKind, OriginalMessage
from processor.webhooks.base import (
    CredentialsReceiver,
    Parsed,
    WebhookError,
    WebhookRequest,
    json_body,
    scalar,
    smtp_evidence,
)

AUTO_REPLY_CLASS = "60"
UNSUBSCRIBE_CLASS = "90"
NOT_FAILURE_CLASSES = frozenset({"80", "100"})
"""Subscribe and challenge-response: not about the address."""


class SparkpostReceiver(CredentialsReceiver):
    provider: ClassVar[str] = "sparkpost"

    def parse(self, request: WebhookRequest) -> Parsed:
        batch = json_body(request)
        if not isinstance(batch, list):
            raise WebhookError(400, "malformed", "a SparkPost body is a JSON array")
        parsed = Parsed()
        for item in batch:
            msys = item.get("msys") if isinstance(item, dict) else None
            if not isinstance(msys, dict):
                raise WebhookError(400, "malformed", "a SparkPost array element is {\"msys\": {...}}")
            if not msys:
                parsed.ignore("ping")
                continue
            if len(msys) != 1:
                raise WebhookError(400, "malformed", "a SparkPost msys object holds one event class")
            (event_class, body), = msys.items()
            event = sparkpost_event(body) if event_class == "message_event" and isinstance(body, dict) else None
            parsed.take(event, f"{event_class}/{scalar(body.get('type')) if isinstance(body, dict) else ''}")
        return parsed


def sparkpost_event(body: dict[str, Any]) -> Event | None:
    kind = scalar(body.get("type"))
    bounce_class = scalar(body.get("bounce_class"))
    recipient = scalar(body.get("raw_rcpt_to")) or scalar(body.get("rcpt_to"))
    common: dict[str, Any] = {
        "recipient": recipient, "mta": "sparkpost", "provider": "sparkpost",
        "provider_category": f"{kind}/{bounce_class}".rstrip("/"), "provider_event_id": scalar(body.get("event_id")),
        "original": OriginalMessage(message_id=scalar(body.get("message_id")), subject=scalar(body.get("subject")),
                                    from_addr=scalar(body.get("msg_from"))),
    }
    if kind == "spam_complaint":
        return Event(kind=EventKind.COMPLAINT, feedback_type=scalar(body.get("fbtype")) or "abuse", **common)
    status, reply, diagnostic = smtp_evidence(scalar(body.get("raw_reason")) or scalar(body.get("reason")),
                                              reply_code=scalar(body.get("error_code")))
    evidence: dict[str, Any] = {"status": status, "reply_code": reply, "diagnostic": diagnostic}
    if kind in ("bounce", "out_of_band", "policy_rejection"):
        if bounce_class == AUTO_REPLY_CLASS:
            return Event(kind=EventKind.AUTO_REPLY, **evidence, **common)
        if bounce_class == UNSUBSCRIBE_CLASS:
            return Event(kind=EventKind.COMPLAINT, feedback_type="unsubscribe", **common)
        if bounce_class in NOT_FAILURE_CLASSES:
            return None
        return Event(kind=EventKind.FAILURE, dsn_action="failed", **evidence, **common)
    if kind == "delay":
        return Event(kind=EventKind.DELAY, dsn_action="delayed", **evidence, **common)
    return None
