"""Mailgun webhooks (JSON, one event per request): HMAC-SHA256 of timestamp + token with the
webhook signing key, compared in constant time; a token seen before is a replay; the timestamp
must be within ``tolerance_seconds``."""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any, ClassVar

from processor.config import WebhookSettings
from processor.records import Event, EventKind, OriginalMessage
from processor.webhooks.base import (
    Parsed,
    Receiver,
    WebhookError,
    WebhookRequest,
    json_body,
    member,
    scalar,
    smtp_evidence,
)

_MAX_TOKENS = 100_000


class MailgunReceiver(Receiver):
    provider: ClassVar[str] = "mailgun"

    def __init__(self, name: str, settings: WebhookSettings) -> None:
        super().__init__(name, settings)
        self._keys = [secret.encode() for secret in settings.secrets()]
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, request: WebhookRequest) -> None:
        if not self._keys:
            raise WebhookError(401, "not_configured", f"webhook {self.name!r} has no signing key (secret)")
        body = _body(request)
        signature = body.get("signature")
        if not isinstance(signature, dict):
            raise WebhookError(400, "bad_signature", "the Mailgun body has no signature object")
        timestamp, token = scalar(signature.get("timestamp")), scalar(signature.get("token"))
        given = scalar(signature.get("signature")).lower().encode()
        found = False
        for key in self._keys:
            expected = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest().encode()
            found |= hmac.compare_digest(expected, given)
        if not found or not token:
            raise WebhookError(400, "bad_signature", "the Mailgun signature does not verify")
        try:
            age = request.received_at - float(timestamp)
        except ValueError:
            raise WebhookError(400, "bad_signature", "the Mailgun timestamp is not a number") from None
        tolerance = self.settings.tolerance_seconds
        if abs(age) > tolerance:
            raise WebhookError(400, "stale", f"the Mailgun timestamp is {int(age)} s from now")
        with self._lock:
            now = request.received_at
            if len(self._tokens) > _MAX_TOKENS:
                self._tokens = {t: until for t, until in self._tokens.items() if until > now}
            until = self._tokens.get(token)
            if until is not None and until > now:
                raise WebhookError(400, "replayed", "this Mailgun token was used before")
            self._tokens[token] = now + 2 * tolerance

    def forget(self, request: WebhookRequest) -> None:
        """Processing failed after the check: let Mailgun's retry with the same token through."""
        signature = _body(request).get("signature")
        if isinstance(signature, dict):
            with self._lock:
                self._tokens.pop(scalar(signature.get("token")), None)

    def parse(self, request: WebhookRequest) -> Parsed:
        data = _body(request).get("event-data")
        if not isinstance(data, dict):
            raise WebhookError(400, "malformed", "the Mailgun body has no event-data object")
        parsed = Parsed()
        parsed.take(mailgun_event(data), scalar(data.get("event")))
        return parsed


def _body(request: WebhookRequest) -> dict[str, Any]:
    body = json_body(request)
    if not isinstance(body, dict):
        raise WebhookError(400, "malformed", "a Mailgun body is a JSON object")
    return body


def mailgun_event(data: dict[str, Any]) -> Event | None:
    """``failed`` (permanent: a failure; temporary: a delay, unless Mailgun gave up, reason "old")
    and ``complained``; other events are not about deliverability (None)."""
    name = scalar(data.get("event"))
    recipient = scalar(data.get("recipient"))
    headers = member(member(data, "message"), "headers")
    message_id = scalar(headers.get("message-id")).strip("<>")
    original = OriginalMessage(message_id=message_id, subject=scalar(headers.get("subject")),
                               from_addr=scalar(headers.get("from")))
    event_id = f"{scalar(data.get('id'))}:{scalar(data.get('timestamp'))}"
    common: dict[str, Any] = {"recipient": recipient, "mta": "mailgun", "provider": "mailgun",
                              "provider_event_id": event_id, "original": original}
    if name == "failed":
        severity, reason = scalar(data.get("severity")), scalar(data.get("reason"))
        status_block = member(data, "delivery-status")
        text = scalar(status_block.get("message")) or scalar(status_block.get("description"))
        status, reply, diagnostic = smtp_evidence(text, scalar(status_block.get("enhanced-code")),
                                                  scalar(status_block.get("code")))
        if reply and not (len(reply) == 3 and reply[0] in "245"):
            reply = ""  # Mailgun's own codes (498, 605, ...) are not SMTP replies
        delayed = severity == "temporary" and reason != "old"
        return Event(kind=EventKind.DELAY if delayed else EventKind.FAILURE,
                     dsn_action="delayed" if delayed else "failed", status=status, reply_code=reply,
                     diagnostic=diagnostic, remote_mta=scalar(status_block.get("mx-host")),
                     provider_category=f"{severity}/{reason}".lower(), **common)
    if name == "complained":
        return Event(kind=EventKind.COMPLAINT, feedback_type="abuse", provider_category="complained", **common)
    return None
