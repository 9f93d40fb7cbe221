"""fml mailing-list manager notices about a member ("Loop Alert", "not member", ...)."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.parse.text import ANGLE_ADDRESS, may_match
from processor.records import Event

NAME = "fml"

_SUBJECT = re.compile(r"^(?:Loop Alert|.*\b(?:not member|rejected|error)\b.*)\s*[:(].*\bML\)?", re.IGNORECASE)
_SUBJECT_WORDS = ("loop alert", "not member", "rejected", "error")
"""Every subject ``_SUBJECT`` matches contains one of these (lower-cased): the others are not
searched (its ``.*`` runs back and forth over the whole subject)."""


def matches(report: Report) -> bool:
    subject = report.subject
    return "x-mlserver" in report.headers or (may_match(subject, _SUBJECT_WORDS) and bool(_SUBJECT.match(subject)))


def parse(report: Report) -> list[Event] | None:
    notice = report.notice.strip()
    found = ANGLE_ADDRESS.search(notice)
    if not found:
        return None
    return [failure(NAME, found.group(1), f"{report.subject} {notice}")]
