"""Postmark bounce and spam-complaint webhooks. Postmark signs nothing: the URL carries HTTP
Basic credentials (``https://user:password@host/v1/webhooks/postmark``), checked here and
required. ``TypeCode`` says what a Bounce record is; ``Details`` holds the remote MTA's text."""

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

FAILURE_CODES = {1: "hardbounce", 256: "dnserror", 512: "spamnotification", 2048: "unknown", 4096: "softbounce",
                 8192: "virusnotification", 100000: "bademailaddress", 100002: "manuallydeactivated",
                 100006: "blocked", 100009: "dmarcpolicy"}
"""Bounce TypeCodes that report a failed delivery (Postmark's Type, lower-case)."""
DELAY_CODES = {2: "transient"}
AUTO_REPLY_CODES = {64: "autoresponder"}
UNSUBSCRIBE_CODES = {16: "unsubscribe"}
COMPLAINT_CODE = 100001


class PostmarkReceiver(CredentialsReceiver):
    provider: ClassVar[str] = "postmark"

    def parse(self, request: WebhookRequest) -> Parsed:
        record = json_body(request)
        if not isinstance(record, dict):
            raise WebhookError(400, "malformed", "a Postmark body is a JSON object")
        parsed = Parsed()
        kind = f"{scalar(record.get('RecordType'))}/{scalar(record.get('Type'))}".strip("/")
        parsed.take(postmark_event(record), kind)
        return parsed


def postmark_event(record: dict[str, Any]) -> Event | None:
    record_type = scalar(record.get("RecordType"))
    if record_type not in ("Bounce", "SpamComplaint"):
        return None
    try:
        code = int(scalar(record.get("TypeCode")) or 0)
    except ValueError:
        raise WebhookError(400, "malformed", "Postmark TypeCode is not a number") from None
    recipient = scalar(record.get("Email"))
    if not recipient:
        raise WebhookError(400, "malformed", "the Postmark record has no Email")
    category = (scalar(record.get("Type")) or str(code)).lower()
    status, reply, diagnostic = smtp_evidence(scalar(record.get("Details")))
    common: dict[str, Any] = {
        "recipient": recipient, "mta": "postmark", "provider": "postmark", "provider_category": category,
        "provider_event_id": f"{record_type}:{scalar(record.get('ID'))}",
        "original": OriginalMessage(message_id=scalar(record.get("MessageID")), subject=scalar(record.get("Subject")),
                                    from_addr=scalar(record.get("From"))),
    }
    if record_type == "SpamComplaint" or code == COMPLAINT_CODE:
        return Event(kind=EventKind.COMPLAINT, feedback_type="abuse", **common)
    if code in UNSUBSCRIBE_CODES:
        return Event(kind=EventKind.COMPLAINT, feedback_type="unsubscribe", **common)
    evidence: dict[str, Any] = {"status": status, "reply_code": reply, "diagnostic": diagnostic}
    if code in FAILURE_CODES:
        return Event(kind=EventKind.FAILURE, dsn_action="failed", **evidence, **common)
    if code in DELAY_CODES:
        return Event(kind=EventKind.DELAY, dsn_action="delayed", **evidence, **common)
    if code in AUTO_REPLY_CODES:
        return Event(kind=EventKind.AUTO_REPLY, **evidence, **common)
    return None
