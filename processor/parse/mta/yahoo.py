"""Yahoo! Mail (and Yahoo-hosted domains): "Sorry, we were unable to deliver your message to the
following address." with "<address>:" paragraphs and a [RCPT_TO]/[BODY]/[MAIL_FROM] marker."""

from __future__ import annotations

import re

from processor.parse.mta._common import address_paragraphs, failure, from_dsn, unique
from processor.parse.report import Report
from processor.records import Event

NAME = "yahoo"

_ADDRESS_LINE = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:")
_STOP = re.compile(r"^\s*-{3,}", re.MULTILINE)


def matches(report: Report) -> bool:
    sender = report.from_address
    return ("yahoo" in sender and sender.startswith("mailer-daemon@")) or (
        "Sorry, we were unable to deliver your message" in report.head
    )


def parse(report: Report) -> list[Event] | None:
    pairs = address_paragraphs(report.notice, _ADDRESS_LINE, _STOP)
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(NAME, report, {a.lower(): s for a, s in pairs}) or None
    return unique(failure(NAME, address, said) for address, said in pairs) or None
