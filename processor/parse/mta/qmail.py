"""qmail (and netqmail, indimail, s/qmail): "Hi. This is the qmail-send program at ..." with
each failed address on a line of its own as "<address>:" followed by the error."""

from __future__ import annotations

import re

from processor.parse.mta._common import address_paragraphs, failure, unique
from processor.parse.report import Report
from processor.records import Event, EventKind

NAME = "qmail"

_ADDRESS_LINE = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:\s*$")
_STOP = re.compile(r"^--- (?:Below this line|Enclosed is|Original message)|^-{3,}\s*$", re.IGNORECASE | re.MULTILINE)
_COMMANDS = (
    (re.compile(r"does not like recipient|most progress was RCPT", re.I), "RCPT"),
    (re.compile(r"sender was rejected|most progress was MAIL", re.I), "MAIL"),
    (re.compile(r"failed after I sent the message|failed on DATA command|most progress was DATA", re.I), "DATA"),
    (re.compile(r"wasn't able to establish an SMTP connection|Connected to .+ but greeting failed|"
                r"Connected to .+ but my name was rejected", re.I), "CONN"),
)


def matches(report: Report) -> bool:
    head = report.head
    return (
        "qmail" in report.origin_received
        or "This is the qmail-send program" in head
        or ("Hi. This is the" in head and "program at" in head)
        or "invoked for bounce" in report.received
    )


def parse(report: Report) -> list[Event] | None:
    pairs = address_paragraphs(report.notice, _ADDRESS_LINE, _STOP)
    if not pairs:
        return None
    delayed = "This is a permanent error" not in report.notice and "temporary" in report.notice.lower()
    events = []
    for address, said in pairs:
        command = next((cmd for pattern, cmd in _COMMANDS if pattern.search(said)), "")
        events.append(
            failure(NAME, address, said, command=command, kind=EventKind.DELAY if delayed else EventKind.FAILURE)
        )
    return unique(events)
