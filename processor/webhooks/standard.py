"""A generic receiver for any sender that signs with Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``).

The body is one small JSON shape (documented in the README), or an array of them::

    {"type": "email.bounced" | "email.delayed" | "email.complained",
     "data": {"recipient": "...", "smtp_status": "5.1.1", "reply_code": "550",
              "diagnostic": "...", "remote_mta": "...", "message_id": "...",
              "category": "<the sender's own word>", "feedback_type": "abuse",
              "event_id": "<optional; default: webhook-id and position>"}}
"""

from __future__ import annotations

from typing import Any, ClassVar

from processor.config import ConfigError, WebhookSettings
from processor.records import Event, EventKind, OriginalMessage
from processor.webhooks import signing
from processor.webhooks.base import Parsed, Receiver, WebhookError, WebhookRequest, json_body, scalar, smtp_evidence

KINDS = {"email.bounced": EventKind.FAILURE, "email.delayed": EventKind.DELAY, "email.complained": EventKind.COMPLAINT}


class StandardReceiver(Receiver):
    provider: ClassVar[str] = "standard"

    def __init__(self, name: str, settings: WebhookSettings) -> None:
        super().__init__(name, settings)
        try:
            self._keys = [signing.decode_secret(secret) for secret in settings.secrets()]
        except ValueError as exc:
            raise ConfigError(f"webhook {name!r}: {exc}") from None

    def verify(self, request: WebhookRequest) -> None:
        if not self._keys:
            raise WebhookError(401, "not_configured", f"webhook {self.name!r} has no secret configured")
        try:
            signing.verify(self._keys, request.header("webhook-id"), request.header("webhook-timestamp"),
                           request.header("webhook-signature"), request.body, now=request.received_at,
                           tolerance=self.settings.tolerance_seconds)
        except signing.SignatureError as exc:
            code = "stale" if "from now" in str(exc) else "bad_signature"
            raise WebhookError(400, code, str(exc)) from None

    def parse(self, request: WebhookRequest) -> Parsed:
        body = json_body(request)
        items = body if isinstance(body, list) else [body]
        parsed = Parsed()
        for position, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
                raise WebhookError(400, "malformed", 'an event is {"type": ..., "data": {...}}')
            kind = KINDS.get(scalar(item.get("type")))
            if kind is None:
                parsed.ignore(scalar(item.get("type")))
                continue
            parsed.events.append(standard_event(kind, item["data"], f"{request.header('webhook-id')}:{position}"))
        return parsed


def standard_event(kind: EventKind, data: dict[str, Any], default_id: str) -> Event:
    recipient = scalar(data.get("recipient"))
    if not recipient:
        raise WebhookError(400, "malformed", "data.recipient is required")
    status, reply, diagnostic = smtp_evidence(scalar(data.get("diagnostic")), scalar(data.get("smtp_status")),
                                              scalar(data.get("reply_code")))
    return Event(
        kind=kind, recipient=recipient, status=status, reply_code=reply, diagnostic=diagnostic,
        dsn_action={EventKind.FAILURE: "failed", EventKind.DELAY: "delayed"}.get(kind, ""),
        remote_mta=scalar(data.get("remote_mta")), mta="standard",
        feedback_type=(scalar(data.get("feedback_type")) or "abuse") if kind is EventKind.COMPLAINT else "",
        original=OriginalMessage(message_id=scalar(data.get("message_id")).strip("<>")),
        provider="standard", provider_category=scalar(data.get("category")).lower(),
        provider_event_id=scalar(data.get("event_id")) or default_id,
    )
