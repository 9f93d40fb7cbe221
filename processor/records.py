"""The records that flow through the pipeline: RawMessage -> Event -> Verdict -> Decision.

Each stage is a pure function of the previous record; all records are frozen so that a stage can
never change what an earlier stage said.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import Any


class EventKind(StrEnum):
    """What a report says happened to one recipient (the parser's view, before any rule)."""

    FAILURE = "failure"
    DELAY = "delay"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"
    DELIVERED = "delivered"


class BounceType(StrEnum):
    """What a failure means for the address (the rules' view)."""

    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"
    DELIVERED = "delivered"
    UNDETERMINED = "undetermined"


class Action(StrEnum):
    """What the policy does with a verdict."""

    SUPPRESS = "suppress"
    COUNT = "count"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """The bytes of one message and where they came from (a path, or mailbox/UIDVALIDITY/UID)."""

    data: bytes
    origin: str


@dataclass(frozen=True, slots=True)
class OriginalMessage:
    """What the report tells us about the message we sent (from the enclosed copy or its headers)."""

    message_id: str = ""
    subject: str = ""
    from_addr: str = ""
    to: str = ""
    list_id: str = ""
    return_path: str = ""
    date: str = ""
    correlation: tuple[tuple[str, str], ...] = ()
    """Configured correlation headers found in the original, as (lower-case name, value) pairs."""


NO_ORIGINAL = OriginalMessage()
"""What the report does not tell about the message we sent (every field empty)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One recipient's outcome as a report states it. Strings are "" when the report is silent."""

    kind: EventKind
    recipient: str = ""
    original_recipient: str = ""
    dsn_action: str = ""
    """The DSN Action field (failed, delayed, delivered, relayed, expanded)."""
    status: str = ""
    """Enhanced status code (RFC 3463) such as 5.1.1."""
    reply_code: str = ""
    """SMTP reply code such as 550."""
    smtp_command: str = ""
    """The SMTP command the failure happened at (CONN, HELO, EHLO, MAIL, RCPT, DATA, ...)."""
    diagnostic: str = ""
    diagnostic_type: str = ""
    remote_mta: str = ""
    reporting_mta: str = ""
    last_attempt: str = ""
    arrival_date: str = ""
    mta: str = ""
    """The report format the parser recognised (rfc3464, postfix, exim, arf, ...)."""
    feedback_type: str = ""
    source_ip: str = ""
    user_agent: str = ""
    bounce_address: str = ""
    """The address the report was delivered to: our envelope sender, possibly a (signed) VERP
    return path (from X-Original-To, Delivered-To, Envelope-To or To of the report)."""
    notice: str = ""
    """The report's human-readable text (on one line, clipped), for a report about one recipient
    only: rules may weigh what the prose says against a status code a relay filled in."""
    original: OriginalMessage = NO_ORIGINAL
    """(The empty one is shared: a frozen record, not built again for each event.)"""
    provider: str = ""
    """The sending provider whose webhook reported the event (ses, sendgrid, ...); "" for mail."""
    provider_category: str = ""
    """The provider's own classification (e.g. ses ``permanent/noemail``): evidence for the rules,
    never the verdict by itself."""
    provider_event_id: str = ""
    """The provider's id of the event: a redelivery with the same id is recorded once."""

    @property
    def message_id(self) -> str:
        """Message-ID of the original message the report is about."""
        return self.original.message_id

    @property
    def recipient_domain(self) -> str:
        return self.recipient.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rule says an event means."""

    event: Event
    reason: str
    bounce_type: BounceType
    rule_id: str = ""
    action: Action | None = None
    """An explicit action override from the rule; None lets the policy decide from bounce_type."""
    ttl: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy does about a verdict, given the address's history."""

    verdict: Verdict
    address: str
    action: Action
    scope: str = "global"
    expires_at: datetime | None = None
    explanation: str = ""
    source: str = ""
    """Where a suppression comes from: bounce, complaint or unsubscribe ("" when nothing is suppressed)."""
    counted: bool = False
    """The verdict counts as a soft failure towards the soft threshold."""


def _pickled_as_fields(cls: type, shared: tuple[object, str] | None = None) -> None:
    """Pickle ``cls`` (a frozen, slotted dataclass) as its class and its field values in order:
    unpickled by one call of its ``__init__``. The dataclass default (a state dict, set back field
    by field through ``dataclasses.fields``) cost the daemon 7.6 us a message to unpickle what its
    parse workers send back (events and verdicts), and them 6.9 us to pickle; this form 4.6 and
    3.0. The same objects come back (equal, and of the same class); ``shared`` (an instance and
    its name in this module) is pickled by that name, so that it comes back as itself."""
    values = attrgetter(*(f.name for f in fields(cls)))
    one, name = shared if shared is not None else (None, "")

    def __reduce__(self: Any) -> str | tuple[type, tuple[Any, ...]]:
        if self is one:
            return name
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]


_pickled_as_fields(OriginalMessage, (NO_ORIGINAL, "NO_ORIGINAL"))
_pickled_as_fields(Event)
_pickled_as_fields(Verdict)
