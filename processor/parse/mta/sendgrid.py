"""SendGrid: "This is an automatically generated message from SendGrid." with one line per
recipient, "local:id:<address> : ip : mx:[ip] : reply in COMMAND", and a DSN part."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.records import Event

NAME = "sendgrid"

_LINE = re.compile(r"^[^\s:]*:[^\s:]*:<([^<>\s]+@[^<>\s]+)>\s*:\s*(.*)$", re.MULTILINE)


def matches(report: Report) -> bool:
    return "generated message from SendGrid" in report.head or "sendgrid.net" in report.origin_received


def parse(report: Report) -> list[Event] | None:
    texts: dict[str, str] = {}
    for m in _LINE.finditer(report.notice):
        fields = [f.strip() for f in m.group(2).split(" : ")]
        texts[m.group(1).lower()] = fields[-1] if fields else ""
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(NAME, report, texts) or None
    return unique(failure(NAME, address, said) for address, said in texts.items()) or None
