"""Last resort for bounces in no format we know: addresses in the notification text that come
with an error, from a message that looks like a bounce (null sender, daemon sender or subject)."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, STATUS, find_reply_code, strip_address
from processor.records import Event

NAME = "generic"

_SUBJECT = re.compile(
    r"undeliver|not (?:be )?delivered|delivery (?:status|failure|failed|notification|problem|report)|"
    r"returned mail|failure notice|mail delivery|could not be delivered|non[- ]?delivery|"
    r"rejected|bounced?|mail system error|returned to sender|delivery error|failed delivery|"
    r"permanent error|nicht zustellbar|unzustellbar|no entregado|non remis|non recapitabile",
    re.IGNORECASE,
)
_ERROR_WORDS = re.compile(
    r"\b(?:unknown|not found|no such|does not exist|doesn't exist|invalid|rejected|refused|denied|"
    r"disabled|unavailable|over ?quota|quota|full|failed|failure|error|blocked|unrouteable|"
    r"unreachable|timed? ?out|expired|not accepted|inactive|suspended|deactivated|unable)\b",
    re.IGNORECASE,
)
_SKIP_LOCAL = re.compile(r"^(?:postmaster|mailer-daemon|abuse|noreply|no-reply)$", re.IGNORECASE)


def matches(report: Report) -> bool:
    return report.looks_like_bounce_sender or bool(_SUBJECT.search(report.subject))


def _own_addresses(report: Report) -> set[str]:
    own = {
        strip_address(report.headers.get("to")).lower(),
        report.from_address,
        strip_address(report.original_headers.get("from")).lower(),
        strip_address(report.original_headers.get("return-path")).lower(),
        strip_address(report.original_headers.get("sender")).lower(),
    }
    own.discard("")
    return own


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    if not notice.strip():
        return None
    own = _own_addresses(report)
    lines = notice.split("\n")
    events: list[Event] = []
    for i, line in enumerate(lines):
        for m in ADDRESS.finditer(line):
            address = strip_address(m.group(1))
            local = address.partition("@")[0]
            if not address or address.lower() in own or _SKIP_LOCAL.match(local):
                continue
            context = " ".join(part.strip() for part in lines[i : i + 4])
            if not (_ERROR_WORDS.search(context) or STATUS.search(context) or find_reply_code(context)):
                continue
            events.append(failure(NAME, address, context))
    return unique(events) or None
