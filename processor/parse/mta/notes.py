"""Lotus Notes (older SMTP MTA): "------- Failure Reasons --------" then the reason and the
address."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, strip_address
from processor.records import Event

NAME = "notes"

_START = re.compile(r"^-+\s*Failure Reasons\s*-+\s*$", re.IGNORECASE | re.MULTILINE)


def matches(report: Report) -> bool:
    return report.subject.lower().startswith("undeliverable message") or "lotus smtp mta" in report.text_lower


def parse(report: Report) -> list[Event] | None:
    m = _START.search(report.notice)
    if not m:
        return None
    reasons: list[str] = []
    events: list[Event] = []
    for line in report.notice[m.end() :].split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if ADDRESS.fullmatch(stripped.strip("<>")):
            events.append(failure(NAME, strip_address(stripped), " ".join(reasons)))
            reasons = []
        else:
            reasons.append(stripped)
    return unique(events) or None
