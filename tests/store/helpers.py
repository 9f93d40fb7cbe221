"""Small builders shared by the store tests (real records, no doubles)."""

from __future__ import annotations

import itertools

from processor.records import Action, BounceType, Event, EventKind, OriginalMessage, Verdict
from processor.store import MessageRef

_counter = itertools.count(1)


def verdict(
    recipient: str,
    bounce_type: BounceType = BounceType.HARD,
    kind: EventKind = EventKind.FAILURE,
    *,
    reason: str = "userunknown",
    status: str = "5.1.1",
    rule_id: str = "test-rule",
    action: Action | None = None,
    feedback_type: str = "",
    sender: str = "news@sender.example",
) -> Verdict:
    event = Event(
        kind,
        recipient=recipient,
        status=status,
        reply_code=status[:1] + "50" if status else "",
        smtp_command="RCPT",
        diagnostic=f"smtp; 550 {status} <{recipient}>: Recipient address rejected",
        remote_mta="mx.example.org",
        reporting_mta="mta.sender.example",
        mta="postfix",
        feedback_type=feedback_type,
        dsn_action="failed" if kind is EventKind.FAILURE else "",
        original=OriginalMessage(message_id=f"<orig-{recipient}@sender.example>", from_addr=sender),
    )
    return Verdict(event, reason, bounce_type, rule_id, action)


def soft(recipient: str) -> Verdict:
    return verdict(recipient, BounceType.SOFT, reason="mailboxfull", status="4.2.2")


def message(mailbox: str = "INBOX", uid: int | None = None, body: bytes | None = None) -> MessageRef:
    """A message reference with a fresh UID and content (unless given)."""
    n = next(_counter)
    return MessageRef.for_bytes(body if body is not None else f"message {n}".encode(), mailbox, 7,
                                uid if uid is not None else n)
