"""KDDI au one net: "Could not be delivered to: <address>" followed by the reason."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.records import Event

NAME = "kddi"

_RECIPIENT = re.compile(r"Could not be delivered to:\s*<([^<>\s]+)>\s*\n?(.*)", re.IGNORECASE)


def matches(report: Report) -> bool:
    return (
        report.from_address.endswith((".dion.ne.jp", "@ezweb.ne.jp", ".auone-net.jp"))
        or "auone-net.jp" in report.received
        or "Could not be delivered to:" in report.text
    )


def parse(report: Report) -> list[Event] | None:
    events = [failure(NAME, m.group(1), m.group(2).strip()) for m in _RECIPIENT.finditer(report.notice)]
    return events or None
