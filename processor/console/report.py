"""The report a verdict came from, split into its MIME parts for display (the part that names
the recipient first). Display only: the verdict itself comes from processor.parse."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import Message
from typing import Any

__all__ = ["ReportPart", "report_parts"]

SHOWN_TYPES = ("message/delivery-status", "message/global-delivery-status", "message/feedback-report",
               "text/plain", "text/rfc822-headers", "message/rfc822-headers")
STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status", "message/feedback-report")
PART_LIMIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class ReportPart:
    content_type: str
    text: str
    names_recipient: bool
    cut: int
    """Characters not shown (the part was longer than PART_LIMIT)."""


def report_parts(data: bytes, recipient: str) -> list[ReportPart]:
    """The message's readable parts, those naming ``recipient`` first (then in message order)."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    parts: list[ReportPart] = []
    needle = recipient.lower()
    pending: list[Message] = [message]
    while pending:
        part = pending.pop(0)
        content_type = part.get_content_type()
        payload: Any = part.get_payload()
        if content_type in STATUS_TYPES and isinstance(payload, list):
            text = "\n\n".join(block.as_string().rstrip("\n") for block in payload)  # a block per recipient
        elif part.is_multipart():
            if content_type.startswith("multipart/"):
                pending[:0] = list(payload)
            continue
        elif content_type in SHOWN_TYPES:
            decoded = part.get_payload(decode=True)
            text = (decoded.decode(part.get_content_charset() or "utf-8", "replace")
                    if isinstance(decoded, bytes) else str(payload))
        else:
            continue
        cut = max(0, len(text) - PART_LIMIT)
        parts.append(ReportPart(content_type, text[:PART_LIMIT], bool(needle) and needle in text.lower(), cut))
    parts.sort(key=lambda p: not p.names_recipient)
    return parts
