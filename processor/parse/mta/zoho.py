"""Zoho Mail: "address Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 ..." lines."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, unique
from processor.parse.report import Report
from processor.records import Event, EventKind

NAME = "zoho"

_LINE = re.compile(r"^\s*<?([^\s<>]+@[^\s<>]+?)>?\s+(.*ERROR_CODE.*)$", re.MULTILINE)
_CODES = re.compile(r"ERROR_CODE\s*:\s*", re.IGNORECASE)
_REPLY = re.compile(r"ERROR_CODE\s*:\s*([245]\d\d)\b", re.IGNORECASE)


def matches(report: Report) -> bool:
    mailer = report.headers.get("x-mailer").lower()
    return mailer.startswith("zoho mail") or report.from_address.endswith("@mail.zoho.com")


def parse(report: Report) -> list[Event] | None:
    delayed = "temporary" in report.notice.lower() and "permanent" not in report.notice.lower()
    kind = EventKind.DELAY if delayed else EventKind.FAILURE
    events = []
    for m in _LINE.finditer(report.notice):
        reply = _REPLY.search(m.group(2))
        said = _CODES.sub("", m.group(2))
        events.append(failure(NAME, m.group(1), said, reply_code=reply.group(1) if reply else "", kind=kind))
    return unique(events) or None
