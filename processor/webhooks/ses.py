"""Amazon SES notifications delivered by Amazon SNS (HTTP/S subscription).

Checks, in order, all before anything is stored: the SNS envelope is JSON and agrees with the
``x-amz-sns-*`` headers; its TopicArn is one of ``topic_arns``; its Timestamp is recent; its
SigningCertURL is https, ends in .pem and its host matches ``cert_host_pattern``; the signature
(SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) verifies with that certificate's key over the
canonical string SNS signs. Certificates are fetched once per URL and cached.

A SubscriptionConfirmation of an allowed topic is confirmed by GETting its SubscribeURL (https,
allowed host); an UnsubscribeConfirmation is only logged (fetching its SubscribeURL would
subscribe again). Notifications carry SES's JSON in ``Message``, in the feedback form
(``notificationType``) or the event-publishing form (``eventType``); every recipient of
``bouncedRecipients``, ``complainedRecipients`` and ``delayedRecipients`` becomes one event.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import threading
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import orjson
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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

log = structlog.get_logger(__name__)

_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
SNS_RETRY_SECONDS = 3600
"""SNS retries an HTTP/S delivery for at most an hour (with the same MessageId and signature)."""
_MAX_CERT_BYTES = 64 * 1024
_MAX_CACHED_CERTS = 64


def string_to_sign(envelope: dict[str, Any]) -> bytes:
    """The canonical text SNS signs: ``Key\\nValue\\n`` for each present key, in SNS's order."""
    keys = _NOTIFICATION_KEYS if envelope.get("Type") == "Notification" else _CONFIRMATION_KEYS
    parts = []
    for key in keys:
        value = envelope.get(key)
        if value is None:
            continue
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode()


class SesReceiver(Receiver):
    provider: ClassVar[str] = "ses"

    def __init__(self, name: str, settings: WebhookSettings) -> None:
        super().__init__(name, settings)
        self._topics = frozenset(settings.topic_arns)
        self._host = re.compile(settings.cert_host_pattern)
        self._certs: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | bool = True
        if settings.cert_ca_file is not None:
            self._tls = ssl.create_default_context(cafile=str(settings.cert_ca_file))
        self._client = httpx.Client(verify=self._tls, timeout=settings.fetch_timeout_seconds,
                                    follow_redirects=False, trust_env=False)

    # ------------------------------------------------------------------ verify

    def verify(self, request: WebhookRequest) -> None:
        self.check_http_credentials(request, required=False)
        envelope = self._envelope(request)
        topic = scalar(envelope.get("TopicArn"))
        if not self._topics:
            raise WebhookError(403, "not_configured", f"webhook {self.name!r} has no topic_arns configured")
        if topic not in self._topics:
            raise WebhookError(403, "unknown_topic", f"topic {topic!r} is not in topic_arns")
        sent = _sns_time(scalar(envelope.get("Timestamp")))
        age = request.received_at - sent
        if age > self.settings.tolerance_seconds + SNS_RETRY_SECONDS or age < -self.settings.tolerance_seconds:
            raise WebhookError(400, "stale", f"SNS Timestamp is {int(age)} s from now")
        version = scalar(envelope.get("SignatureVersion"))
        if version not in ("1", "2"):
            raise WebhookError(400, "bad_signature", f"unsupported SignatureVersion {version!r}")
        key = self._certificate_key(scalar(envelope.get("SigningCertURL")))
        try:
            signature = base64.b64decode(scalar(envelope.get("Signature")), validate=True)
            digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # SNS v1 is SHA1withRSA
            key.verify(signature, string_to_sign(envelope), padding.PKCS1v15(), digest)
        except (InvalidSignature, binascii.Error, ValueError):
            raise WebhookError(400, "bad_signature", "the SNS signature does not verify") from None

    def _envelope(self, request: WebhookRequest) -> dict[str, Any]:
        envelope = json_body(request)
        if not isinstance(envelope, dict):
            raise WebhookError(400, "malformed", "the SNS body is not a JSON object")
        kind = scalar(envelope.get("Type"))
        if kind not in _TYPES:
            raise WebhookError(400, "malformed", f"unknown SNS Type {kind!r}")
        header_type = request.header("x-amz-sns-message-type")
        if header_type and header_type != kind:
            raise WebhookError(400, "malformed", "x-amz-sns-message-type does not match the body's Type")
        header_id = request.header("x-amz-sns-message-id")
        if header_id and header_id != scalar(envelope.get("MessageId")):
            raise WebhookError(400, "malformed", "x-amz-sns-message-id does not match the body's MessageId")
        return envelope

    def allowed_url(self, url: str) -> bool:
        """An https URL on a host ``cert_host_pattern`` allows (``host:port`` when it has a port)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        return (parts.scheme == "https" and not parts.username and not parts.password
                and self._host.fullmatch(parts.netloc.lower()) is not None)

    def _certificate_key(self, url: str) -> rsa.RSAPublicKey:
        if not self.allowed_url(url) or not urlsplit(url).path.endswith(".pem"):
            raise WebhookError(400, "bad_certificate_url", "SigningCertURL is not an https .pem URL on an allowed host")
        with self._lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        try:
            response = self._client.get(url)
            response.raise_for_status()
            if len(response.content) > _MAX_CERT_BYTES:
                raise ValueError("certificate too large")
            certificate = x509.load_pem_x509_certificate(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("webhook.sns_certificate_failed", webhook=self.name, url=url, error=type(exc).__name__)
            raise WebhookError(400, "bad_certificate", "the SNS signing certificate could not be fetched") from None
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookError(400, "bad_certificate", "the SNS signing certificate has no RSA key")
        with self._lock:
            if len(self._certs) >= _MAX_CACHED_CERTS:
                self._certs.clear()
            self._certs[url] = key
        return key

    # ------------------------------------------------------------------ parse

    def parse(self, request: WebhookRequest) -> Parsed:
        envelope = self._envelope(request)
        kind = envelope["Type"]
        parsed = Parsed()
        if kind == "SubscriptionConfirmation":
            parsed.note = self._confirm(envelope)
            return parsed
        if kind == "UnsubscribeConfirmation":
            log.warning("webhook.sns_unsubscribed", webhook=self.name, topic=envelope.get("TopicArn"))
            parsed.note = "unsubscribe confirmation noted (not re-subscribed)"
            return parsed
        try:
            message = orjson.loads(scalar(envelope.get("Message")))
        except orjson.JSONDecodeError:
            parsed.ignore("text")  # SES's "Successfully validated SNS topic ..." notice
            return parsed
        if not isinstance(message, dict):
            raise WebhookError(400, "malformed", "the SES message is not a JSON object")
        parsed.events.extend(ses_events(message, scalar(envelope.get("MessageId")), parsed))
        return parsed

    def _confirm(self, envelope: dict[str, Any]) -> str:
        url = scalar(envelope.get("SubscribeURL"))
        if not self.settings.confirm_subscriptions:
            return "subscription not confirmed (confirm_subscriptions = false)"
        if not self.allowed_url(url):
            raise WebhookError(400, "bad_subscribe_url", "SubscribeURL is not an https URL on an allowed host")
        try:
            self._client.get(url).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("webhook.sns_confirm_failed", webhook=self.name, error=type(exc).__name__)
            raise WebhookError(502, "confirm_failed", "the SubscribeURL could not be fetched") from None
        log.info("webhook.sns_subscribed", webhook=self.name, topic=envelope.get("TopicArn"))
        return "subscription confirmed"


def _sns_time(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise WebhookError(400, "malformed", f"SNS Timestamp {value!r} is not an ISO 8601 time") from None


def _mail_original(mail: Any) -> OriginalMessage:
    if not isinstance(mail, dict):
        return OriginalMessage()
    common = member(mail, "commonHeaders")
    message_id = scalar(common.get("messageId")) or scalar(mail.get("messageId"))
    subject = scalar(common.get("subject"))
    return OriginalMessage(message_id=message_id, subject=subject, from_addr=scalar(mail.get("source")))


def ses_events(message: dict[str, Any], sns_id: str, parsed: Parsed) -> list[Event]:
    """One event per recipient of a Bounce, Complaint or DeliveryDelay; other types are counted
    as ignored. The id of an event is SES's feedbackId (else the SNS MessageId) and the recipient."""
    kind = scalar(message.get("eventType")) or scalar(message.get("notificationType"))
    original = _mail_original(message.get("mail"))
    events: list[Event] = []
    if kind == "Bounce":
        bounce = _object(message, "bounce")
        category = f"{scalar(bounce.get('bounceType'))}/{scalar(bounce.get('bounceSubType'))}".lower()
        event_id = scalar(bounce.get("feedbackId")) or sns_id
        reporting = _strip_type(scalar(bounce.get("reportingMTA")))
        for recipient in _list(bounce, "bouncedRecipients"):
            status, reply, diagnostic = smtp_evidence(scalar(recipient.get("diagnosticCode")),
                                                      scalar(recipient.get("status")))
            events.append(Event(
                kind=EventKind.FAILURE, recipient=scalar(recipient.get("emailAddress")),
                dsn_action=scalar(recipient.get("action")) or "failed", status=status, reply_code=reply,
                diagnostic=diagnostic, diagnostic_type="smtp" if diagnostic else "",
                remote_mta=scalar(bounce.get("remoteMtaIp")), reporting_mta=reporting, mta="ses",
                original=original, provider="ses", provider_category=category, provider_event_id=event_id,
            ))
    elif kind == "Complaint":
        complaint = _object(message, "complaint")
        category = (scalar(complaint.get("complaintSubType")) or "complaint").lower()
        event_id = scalar(complaint.get("feedbackId")) or sns_id
        for recipient in _list(complaint, "complainedRecipients"):
            events.append(Event(
                kind=EventKind.COMPLAINT, recipient=scalar(recipient.get("emailAddress")),
                feedback_type=scalar(complaint.get("complaintFeedbackType")) or "abuse",
                user_agent=scalar(complaint.get("userAgent")), arrival_date=scalar(complaint.get("arrivalDate")),
                mta="ses", original=original, provider="ses", provider_category=category,
                provider_event_id=event_id,
            ))
    elif kind == "DeliveryDelay":
        delay = _object(message, "deliveryDelay")
        category = f"delay/{scalar(delay.get('delayType'))}".lower()
        for recipient in _list(delay, "delayedRecipients"):
            status, reply, diagnostic = smtp_evidence(scalar(recipient.get("diagnosticCode")),
                                                      scalar(recipient.get("status")))
            events.append(Event(
                kind=EventKind.DELAY, recipient=scalar(recipient.get("emailAddress")), dsn_action="delayed",
                status=status, reply_code=reply, diagnostic=diagnostic,
                reporting_mta=_strip_type(scalar(delay.get("reportingMTA"))), mta="ses", original=original,
                provider="ses", provider_category=category, provider_event_id=sns_id,
            ))
    else:
        parsed.ignore(kind)
    if kind in ("Bounce", "Complaint", "DeliveryDelay") and not events:
        raise WebhookError(400, "malformed", f"the SES {kind} names no recipient")
    return events


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise WebhookError(400, "malformed", f"the SES message has no {key!r} object")
    return value


def _list(container: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = container.get(key)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict) and scalar(item.get("emailAddress"))]


def _strip_type(value: str) -> str:
    """``mx.example.com`` from a DSN field such as ``dns; mx.example.com``."""
    return value.partition(";")[2].strip() if ";" in value else value
