"""SendGrid (Twilio) Event Webhook: batched JSON arrays, signed with ECDSA P-256 / SHA-256 over
the timestamp header followed by the raw body ("Signed Event Webhook Requests")."""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from processor.config import ConfigError, WebhookSettings
from processor.records import Event, EventKind, OriginalMessage
from processor.webhooks.base import (
    Parsed,
    Receiver,
    WebhookError,
    WebhookRequest,
    json_body,
    parse_objects,
    scalar,
    smtp_evidence,
)

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
_REFUSED = "the SendGrid signature does not verify"


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER) or as PEM."""
    value = text.strip()
    try:
        key = (load_pem_public_key(value.encode()) if value.startswith("-----")
               else load_der_public_key(base64.b64decode(value, validate=True)))
    except (ValueError, binascii.Error, TypeError):
        raise ConfigError("the SendGrid verification key is not a base64 DER or PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("the SendGrid verification key is not an ECDSA key")
    return key


class SendgridReceiver(Receiver):
    provider: ClassVar[str] = "sendgrid"

    def __init__(self, name: str, settings: WebhookSettings) -> None:
        super().__init__(name, settings)
        self._keys = [load_public_key(secret) for secret in settings.secrets()]

    def verify(self, request: WebhookRequest) -> None:
        if not self._keys:
            raise WebhookError(401, "not_configured", f"webhook {self.name!r} has no verification key (secret)")
        self.check_http_credentials(request, required=False)
        timestamp = request.header(TIMESTAMP_HEADER)
        try:
            sent = int(timestamp)
            signature = base64.b64decode(request.header(SIGNATURE_HEADER), validate=True)
        except (ValueError, binascii.Error):
            raise WebhookError(400, "bad_signature", _REFUSED) from None
        if abs(request.received_at - sent) > self.settings.tolerance_seconds:
            raise WebhookError(400, "stale", f"the signed timestamp is {int(request.received_at - sent)} s from now")
        signed = timestamp.encode() + request.body
        for key in self._keys:
            try:
                key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
                return
            except InvalidSignature:
                continue
        raise WebhookError(400, "bad_signature", _REFUSED)

    def parse(self, request: WebhookRequest) -> Parsed:
        batch = json_body(request)
        if not isinstance(batch, list):
            raise WebhookError(400, "malformed", "a SendGrid body is a JSON array of events")
        return parse_objects(batch, "a SendGrid event", sendgrid_event)


def sendgrid_event(item: dict[str, Any]) -> Event | None:
    """bounce (type bounce or blocked) and dropped are failures, deferred a delay, spamreport a
    complaint; other event types are not about deliverability (None)."""
    name = scalar(item.get("event"))
    recipient = scalar(item.get("email"))
    event_id = scalar(item.get("sg_event_id")) or f"{scalar(item.get('sg_message_id'))}:{name}:{recipient}"
    original = OriginalMessage(message_id=scalar(item.get("smtp-id")).strip("<>"))
    common: dict[str, Any] = {"recipient": recipient, "mta": "sendgrid", "provider": "sendgrid",
                              "provider_event_id": event_id, "original": original}
    if name in ("bounce", "dropped"):
        status, reply, diagnostic = smtp_evidence(scalar(item.get("reason")), scalar(item.get("status")))
        if name == "bounce":
            category = scalar(item.get("type")) or "bounce"
            classification = scalar(item.get("bounce_classification"))
            if classification:
                category += "/" + classification
        else:
            category = "dropped/" + scalar(item.get("reason"))
        return Event(kind=EventKind.FAILURE, dsn_action="failed", status=status, reply_code=reply,
                     diagnostic=diagnostic, provider_category=category.lower(), **common)
    if name == "deferred":
        status, reply, diagnostic = smtp_evidence(scalar(item.get("response")), scalar(item.get("status")))
        return Event(kind=EventKind.DELAY, dsn_action="delayed", status=status, reply_code=reply,
                     diagnostic=diagnostic, provider_category="deferred", **common)
    if name == "spamreport":
        return Event(kind=EventKind.COMPLAINT, feedback_type="abuse", provider_category="spamreport", **common)
    return None
