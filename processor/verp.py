"""Signed VERP return paths: forged-bounce protection, in the manner of BATV and SRS.

A sender mails ``alice@example.org`` with the envelope sender

    bounces+k3v9q2m7xa4c=alice=example.org@sender.example
            └──mac───┘└day┘ (optional "-tag" before the first "=")

where the token carries an HMAC of the recipient, a day stamp and an optional tag (a campaign or
message id) under a secret only we know. A bounce that comes back to that address names its
recipient in a way nobody else can forge; a fake DSN naming someone else's address, sent to our
bounce mailbox, fails verification and does not suppress.

Tokens are case-insensitive (some MTAs lower-case local parts), use only characters that are
safe in a local part, and expire after a configured number of days. Several secrets may be
configured at once so that a secret can be rotated: the first signs, all verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

__all__ = ["Verification", "VerpError", "make_return_path", "verify_return_path"]

_EPOCH = date(1970, 1, 1)
_DAY_MODULUS = 32 * 32  # two base32 characters: the stamp wraps every 1024 days, like SRS's
_MAC_CHARS = 10  # 50 bits of HMAC-SHA256
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_TAG = re.compile(r"^[A-Za-z0-9_.]{1,32}$")
_TOKEN = re.compile(
    rf"^(?P<prefix>[^+@]+)\+(?P<mac>[a-z2-7]{{{_MAC_CHARS}}})(?P<day>[a-z2-7]{{2}})(?:-(?P<tag>[A-Za-z0-9_.]{{1,32}}))?"
    r"=(?P<local>.+)=(?P<domain>[^=@]+)@(?P<sender>[^@]+)$",
    re.IGNORECASE,
)


class VerpError(ValueError):
    """A return path cannot be made (bad recipient, tag or secret)."""


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking a return path. ``recipient`` is set only when ``valid``."""

    valid: bool
    recipient: str = ""
    tag: str = ""
    reason: str = ""


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _encode_day(day: date) -> str:
    n = _day_number(day) % _DAY_MODULUS
    return _ALPHABET[n // 32] + _ALPHABET[n % 32]


def _decode_day(stamp: str) -> int:
    return _ALPHABET.index(stamp[0]) * 32 + _ALPHABET.index(stamp[1])


def _mac(secret: bytes, day: str, tag: str, recipient: str) -> str:
    message = f"{day}|{tag.lower()}|{recipient.lower()}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_MAC_CHARS]


def _secret_bytes(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    if len(raw) < 16:
        raise VerpError("the VERP secret must be at least 16 bytes long")
    return raw


def make_return_path(
    recipient: str,
    *,
    secret: str | bytes,
    sender_domain: str,
    prefix: str = "bounces",
    tag: str = "",
    today: date | None = None,
) -> str:
    """The signed envelope sender to use when mailing ``recipient``.

    ``tag`` (optional, up to 32 of A-Z a-z 0-9 _ .) names a campaign or message and is signed too.
    """
    recipient = recipient.strip().strip("<>")
    local, at, domain = recipient.rpartition("@")
    if not at or not local or not domain or "@" in local or " " in recipient:
        raise VerpError(f"not an address: {recipient!r}")
    if tag and not _TAG.match(tag):
        raise VerpError(f"a tag may hold only A-Z a-z 0-9 _ . (up to 32): {tag!r}")
    if not prefix or any(c in prefix for c in "+@= "):
        raise VerpError(f"invalid return-path prefix: {prefix!r}")
    stamp = _encode_day(today or datetime.now(UTC).date())
    mac = _mac(_secret_bytes(secret), stamp, tag, recipient)
    suffix = f"-{tag}" if tag else ""
    return f"{prefix}+{mac}{stamp}{suffix}={local}={domain.lower()}@{sender_domain.lower()}"


def verify_return_path(
    address: str,
    *,
    secrets: Sequence[str | bytes],
    max_age_days: int = 30,
    today: date | None = None,
) -> Verification:
    """Check a return path made by ``make_return_path``; never raises on bad input."""
    m = _TOKEN.match(address.strip().strip("<>"))
    if not m:
        return Verification(False, reason="not a signed return path")
    if not secrets:
        return Verification(False, reason="no VERP secret is configured")
    stamp, tag = m.group("day").lower(), m.group("tag") or ""
    recipient = f"{m.group('local')}@{m.group('domain')}"
    given = m.group("mac").lower()
    if not any(hmac.compare_digest(given, _mac(_secret_bytes(s), stamp, tag, recipient)) for s in secrets):
        return Verification(False, reason="signature does not match")
    age = (_day_number(today or datetime.now(UTC).date()) - _decode_day(stamp)) % _DAY_MODULUS
    if age > max_age_days:
        return Verification(False, reason=f"signature expired ({age} days old, limit {max_age_days})")
    return Verification(True, recipient=recipient, tag=tag)
