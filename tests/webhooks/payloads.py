"""The hand-written provider payloads in samples/webhooks/ (one file per provider event shape,
named ``<provider>-<what>.json``), wrapped and signed the way each provider sends them, with keys
the tests make. The same wrapping feeds the receivers' pure ``parse`` (table tests) and the real
HTTP server (security tests)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from processor.webhooks import signing
from processor.webhooks.ses import string_to_sign

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "webhooks"
TOPIC = "arn:aws:sns:eu-west-1:210987654321:ses-feedback"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def provider_of(name: str) -> str:
    return name.split("-", 1)[0]


def rsa_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    """A key and a self-signed PEM certificate, standing in for SNS's signing certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Keys:
    """Every secret the tests sign with (and the settings that accept them)."""

    sns_key: rsa.RSAPrivateKey
    sns_cert: bytes
    sendgrid_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    mailgun_key: str = field(default_factory=lambda: secrets.token_hex(24))
    standard_secret: str = field(default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    basic: str = field(default_factory=lambda: f"provider:{secrets.token_urlsafe(12)}")

    @property
    def sendgrid_public(self) -> str:
        der = self.sendgrid_key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()


def sns_envelope(message: Any, cert_url: str, *, key: rsa.RSAPrivateKey, version: str = "2",
                 topic: str = TOPIC, kind: str = "Notification", timestamp: float | None = None,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """A signed SNS message: ``message`` (an SES object, or text) as SNS wraps and signs it."""
    sent = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, UTC)
    envelope: dict[str, str] = {
        "Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": topic,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": sent.strftime("%Y-%m-%dT%H:%M:%S.") + f"{sent.microsecond // 1000:03d}Z",
        "SignatureVersion": version, "SigningCertURL": cert_url, **(extra or {}),
    }
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(string_to_sign(envelope), padding.PKCS1v15(), digest)
    envelope["Signature"] = base64.b64encode(signature).decode()
    return envelope


def sendgrid_headers(body: bytes, key: ec.EllipticCurvePrivateKey, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


def mailgun_body(event_data: Any, key: str, *, timestamp: int | None = None, token: str | None = None) -> bytes:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    mac = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": mac},
                       "event-data": event_data}).encode()


def standard_headers(body: bytes, secret: str, *, message_id: str | None = None,
                     timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    return {"webhook-id": message_id, "webhook-timestamp": str(stamp),
            "webhook-signature": signing.sign(signing.decode_secret(secret), message_id, stamp, body),
            "Content-Type": "application/json"}


def basic_header(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def unsigned_request(name: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a sample as the provider posts it, without any proof (for the
    receivers' pure ``parse``)."""
    provider = provider_of(name)
    payload = sample(name)
    if provider == "ses":
        envelope = {"Type": "Notification", "MessageId": "sample", "TopicArn": TOPIC, "Message": json.dumps(payload)}
        return json.dumps(envelope).encode(), {}
    if provider == "mailgun":
        return json.dumps({"signature": {}, "event-data": payload}).encode(), {}
    if provider == "standard":
        return json.dumps(payload).encode(), {"webhook-id": f"sample-{name}"}
    return json.dumps(payload).encode(), {}
