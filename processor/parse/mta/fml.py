"""fml mailing-list manager notices about a member ("Loop Alert", "not member", ...)."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.parse.text import ANGLE_ADDRESS
from processor.records import Event

NAME = "fml"

_SUBJECT = re.compile(r"^(?:Loop Alert|.*\b(?:not member|rejected|error)\b.*)\s*[:(].*\bML\)?", re.IGNORECASE)


def matches(report: Report) -> bool:
    return "x-mlserver" in report.headers or bool(_SUBJECT.match(report.subject))


def parse(report: Report) -> list[Event] | None:
    notice = report.notice.strip()
    found = ANGLE_ADDRESS.search(notice)
    if not found:
        return None
    return [failure(NAME, found.group(1), f"{report.subject} {notice}")]
