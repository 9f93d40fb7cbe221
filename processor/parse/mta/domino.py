"""IBM/HCL Domino: "Your message ... was not delivered to: <address> because: <reason>"."""

from __future__ import annotations

import re
from dataclasses import replace

from processor.parse.mta._common import failure, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, strip_address
from processor.records import Event

NAME = "domino"

_BLOCK = re.compile(
    r"was not delivered to:\s*\n(?P<who>.*?)\n\s*\n\s*because:\s*\n(?P<why>.*?)(?:\n\s*\n|\Z)",
    re.IGNORECASE | re.DOTALL,
)


def matches(report: Report) -> bool:
    return report.subject.upper().startswith("DELIVERY FAILURE:") or "domino" in report.origin_received or (
        "was not delivered to:" in report.text and "because:" in report.text
    )


def parse(report: Report) -> list[Event] | None:
    events: list[Event] = []
    for m in _BLOCK.finditer(report.notice):
        why = " ".join(m.group("why").split())
        for found in ADDRESS.finditer(m.group("who")):
            events.append(failure(NAME, strip_address(found.group(1)), why))
    events = unique(events)
    dsn = report.dsn
    if dsn is not None and len(dsn.recipients) == len(events):
        # the DSN part names the relay's view of the address; the text names what was sent
        events = [replace(e, status=e.status or r.status) for e, r in zip(events, dsn.recipients, strict=True)]
    return events or None
