"""Google Groups: a post to a group that does not exist or does not accept it is returned by
Gmail's mailer-daemon with the group in X-Failed-Recipients and no DSN."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.parse.text import strip_address
from processor.records import Event

NAME = "googlegroups"


def matches(report: Report) -> bool:
    failed = report.headers.get("x-failed-recipients").lower()
    if not failed or report.dsn is not None:
        return False
    return "googlegroups.com" in failed or "groups.google.com" in report.text or "Google Groups" in report.text


def parse(report: Report) -> list[Event] | None:
    failed = [strip_address(a) for a in re.split(r"[,\s]+", report.headers.get("x-failed-recipients")) if "@" in a]
    said = " ".join(p.strip() for p in report.notice.split("\n\n")[:3] if p.strip())
    return [failure(NAME, address, said, command="DATA") for address in failed] or None
