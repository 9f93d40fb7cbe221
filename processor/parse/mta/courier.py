"""Courier MTA: "This is a delivery status notification from ..., running the Courier mail
server" with "<address>:" paragraphs holding the SMTP dialogue (">>> RCPT TO", "<<< 550 ...")."""

from __future__ import annotations

import re

from processor.parse.mta._common import address_paragraphs, failure, from_dsn, unique
from processor.parse.report import Report
from processor.records import Event, EventKind

NAME = "courier"

_ADDRESS_LINE = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:")
_STOP = re.compile(r"^-{20,}\s*$", re.MULTILINE)
_START = re.compile(r"^\s*(?:UNDELIVERABLE MAIL|DELAYED MAIL)\s*$", re.MULTILINE)
_GREETING = re.compile(r"^\s*>>> \(initial greeting\)", re.MULTILINE)
"""Courier's transcript line for a reply to no command: the server refused at its greeting."""


def matches(report: Report) -> bool:
    return "running the Courier mail server" in report.head or "courier" in report.headers.get("x-mailer").lower()


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    start = _START.search(notice)
    body = notice[start.end() :] if start else notice
    pairs = address_paragraphs(body, _ADDRESS_LINE, _STOP)
    commands = {a.lower(): "CONN" for a, said in pairs if _GREETING.search(said)}
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(NAME, report, {a.lower(): s for a, s in pairs}, commands=commands) or None
    delayed = start is not None and "DELAYED" in start.group(0)
    kind = EventKind.DELAY if delayed else EventKind.FAILURE
    return unique(
        failure(NAME, address, said, kind=kind, command=commands.get(address.lower(), "")) for address, said in pairs
    ) or None
