"""OpenSMTPD: "An error has occurred while attempting to deliver a message for the following
list of recipients:" with "address: error" lines."""

from __future__ import annotations

import re
from dataclasses import replace

from processor.parse.mta._common import failure, unique
from processor.parse.report import Report
from processor.records import Event, EventKind

NAME = "opensmtpd"

_INTRO = re.compile(r"(?:the following list of recipients|recipients? (?:could not be|has not yet been) delivered|"
                    r"delivery of (?:your|this) message (?:to|has been) )[^\n]*\n", re.IGNORECASE)
_LINE = re.compile(r"^\s*<?([^\s<>]+@[^\s<>:]+)>?:\s*(.*)$")
_EXPIRED = re.compile(r"^\s*\"?Envelope expired\b", re.IGNORECASE)
"""OpenSMTPD's own text when an envelope's expiry time passes and it drops the message."""
_END = re.compile(r"^\s*Below is a copy of the original message", re.IGNORECASE | re.MULTILINE)


def matches(report: Report) -> bool:
    return "(opensmtpd)" in report.origin_received or "This is the MAILER-DAEMON, please DO NOT REPLY" in report.text


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    end = _END.search(notice)
    if end:
        notice = notice[: end.start()]
    intro = _INTRO.search(notice)
    body = notice[intro.end() :] if intro else notice
    delayed = "warning" in report.subject.lower() or "delayed" in report.subject.lower()
    blocks = {r.recipient.lower(): r for r in report.dsn.recipients} if report.dsn is not None else {}
    events: list[Event] = []
    for line in body.split("\n"):
        m = _LINE.match(line)
        if not m:
            continue
        address, said = m.group(1), m.group(2)
        block = blocks.get(address.lower())
        action = block.action if block is not None else ""
        stated = block.status if block is not None else ""
        kind = EventKind.DELAY if delayed else EventKind.FAILURE
        if _EXPIRED.match(said):
            # the envelope left the queue: OpenSMTPD still writes "Action: delayed", but the
            # message is given up
            kind = EventKind.FAILURE
        event = failure(NAME, address, said, kind=kind, dsn_action=action)
        if not event.status and stated:
            event = replace(event, status=stated)
        events.append(event)
    return unique(events) or None
