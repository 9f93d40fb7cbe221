"""au by KDDI (EZweb) mobile mail: a Japanese notice, an English line saying why, and the
recipients as "<address>" lines (or "Recipient: <address>" with an SMTP transcript)."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, unique
from processor.parse.report import Report
from processor.parse.text import ANGLE_ADDRESS
from processor.records import Event

NAME = "ezweb"

_ENGLISH = re.compile(r"^[ -~]{12,}$")


def matches(report: Report) -> bool:
    return report.from_address.endswith("@ezweb.ne.jp") or "(ezweb mail)" in report.received or (
        "ezweb.ne.jp" in report.received and report.subject.startswith("Mail System Error")
    )


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    recipients: list[str] = []
    reasons: list[str] = []
    for line in notice.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        found = ANGLE_ADDRESS.search(stripped)
        dialogue = stripped.startswith(("<<<", ">>>"))
        if found and not dialogue and (stripped.startswith("<") or stripped.lower().startswith("recipient:")):
            recipients.append(found.group(1))
        elif stripped.startswith(("<<<", ">>>")) or (_ENGLISH.match(stripped) and not stripped.startswith("$B")):
            reasons.append(stripped)
    said = " ".join(reasons)
    return unique(failure(NAME, r, said) for r in recipients) or None
