"""The Standard Webhooks signature (v1: HMAC-SHA256 over ``id.timestamp.body``), both ways: the
``standard`` receiver verifies with it, the outbox signs with it.

Secrets are written ``whsec_`` + base64 of the key bytes; a bare base64 value is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["SignatureError", "decode_secret", "sign", "verify"]

DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature headers are missing, stale or do not verify; the message says which."""


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_...`` secret."""
    value = secret.strip()
    if value.startswith("whsec_"):
        value = value[len("whsec_"):]
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise ValueError("a Standard Webhooks secret must hold at least 16 bytes")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(keys: list[bytes], message_id: str, timestamp: str, signature_header: str, body: bytes, *,
           now: float, tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> None:
    """Raise SignatureError unless one ``v1`` signature in the header matches one of ``keys`` and
    the timestamp is within ``tolerance`` seconds of ``now`` (either way)."""
    if not message_id or not timestamp or not signature_header:
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a Unix time") from None
    if abs(now - sent) > tolerance:
        raise SignatureError(f"webhook-timestamp is {int(now - sent)} s from now (tolerance {tolerance} s)")
    given = []
    for item in signature_header.split():
        version, _, value = item.partition(",")
        if version == "v1":
            try:
                given.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    signed = f"{message_id}.{sent}.".encode() + body
    found = False
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        for candidate in given:
            found |= hmac.compare_digest(expected, candidate)
    if not found:
        raise SignatureError("no v1 signature in webhook-signature verifies")
