"""Last resort for bounces in no format we know, from a message that looks like a bounce (null
sender, a daemon or postmaster sender, or a bounce subject). Three layouts, in order:

1. "<address>:" on a line of its own (or followed by the error), the error on the next lines;
2. an introduction ("... to the following recipient(s):") followed by the addresses;
3. addresses in the notice that come with error words nearby (the line before, or the next lines).
"""

from __future__ import annotations

import re

from processor.parse.mta._common import address_paragraphs, failure, unique
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
    r"unreachable|timed? ?out|expired|not accepted|inactive|suspended|deactivated|unable|undeliverable|"
    r"exceed(?:s|ed)?|"
    r"(?:could|can)(?:n't|n.t| not) be delivered|(?:wasn't|wasn.t|was not) (?:found|delivered))\b",
    re.IGNORECASE,
)
_SKIP_LOCAL = re.compile(
    r"^(?:postmaster|mailer-daemon|abuse|noreply|no-reply|owner-.+|.+-(?:request|owner|admin|bounces?))$",
    re.IGNORECASE,
)
"""Local parts of a system's or a mailing list's own addresses (list-request, owner-list, list-admin)."""
_LIST_HEADERS = ("list-post", "list-unsubscribe", "list-subscribe", "list-help", "list-owner", "list-archive")
_COLON_LINE = re.compile(r"^\s{0,4}<([^<>\s]+@[^<>\s]+)>:")
_INTRO = re.compile(
    r"(?:following (?:recipients?|addresse?s?(?:\(es\))?|e-?mail addresses)|"
    r"(?:did not reach|could not be delivered to|was not delivered to|failed permanently)"
    r"(?: the following)?(?: recipients?)?)[^\n]*?:[ \t]*",
    re.IGNORECASE,
)
_STOP = re.compile(r"^\s*(?:-{3,}|={3,}|Content-Type:|Received:|Reporting-MTA:)", re.IGNORECASE | re.MULTILINE)


_REPLY_SUBJECT = re.compile(r"^\s*(?:re|aw|sv|antw|odp|res|ref)\s*:", re.IGNORECASE)


def matches(report: Report) -> bool:
    """A daemon's message, or one whose subject says it is a bounce; a person's reply ("Re: ...
    rejected") is never read as one."""
    if report.looks_like_bounce_sender:
        return True
    return _SUBJECT.search(report.subject) is not None and _REPLY_SUBJECT.match(report.subject) is None


def _own_addresses(report: Report) -> set[str]:
    """Addresses that are never the failed recipient: the report's and the original's senders,
    and a mailing list's own addresses from the List-* headers."""
    own = {
        strip_address(report.headers.get("to")).lower(),
        report.from_address,
        strip_address(report.original_headers.get("from")).lower(),
        strip_address(report.original_headers.get("return-path")).lower(),
        strip_address(report.original_headers.get("sender")).lower(),
    }
    for headers in (report.headers, report.original_headers):
        for name in _LIST_HEADERS:
            own.update(a.lower() for a in ADDRESS.findall(headers.get(name)))
    own.discard("")
    return own


def _usable(address: str, own: set[str]) -> bool:
    local = address.partition("@")[0]
    return bool(address) and address.lower() not in own and not _SKIP_LOCAL.match(local)


def _colon_list(notice: str, own: set[str]) -> list[Event]:
    return [
        failure(NAME, address, said)
        for address, said in address_paragraphs(notice, _COLON_LINE, _STOP)
        if _usable(address, own)
    ]


def _introduced_list(notice: str, own: set[str]) -> list[Event]:
    m = _INTRO.search(notice)
    if not m:
        return []
    rest = notice[m.end() :]
    stop = _STOP.search(rest)
    if stop:
        rest = rest[: stop.start()]
    events: list[Event] = []
    lines = rest.split("\n")
    for index, line in enumerate(lines):
        found = ADDRESS.search(line)
        if not found:
            if events and not line.strip() and index + 1 < len(lines) and not ADDRESS.search(lines[index + 1]):
                break
            continue
        address = strip_address(found.group(1))
        if not _usable(address, own):
            continue
        following = lines[index + 1 : index + 4]
        after = " ".join(part.strip() for part in following if part.strip() and not ADDRESS.search(part))
        said = (line[found.end() :].strip(" :>)") + " " + after).strip()
        events.append(failure(NAME, address, said))
    return events


def _scattered(notice: str, own: set[str]) -> list[Event]:
    lines = notice.split("\n")
    events: list[Event] = []
    for i, line in enumerate(lines):
        for m in ADDRESS.finditer(line):
            address = strip_address(m.group(1))
            if not _usable(address, own):
                continue
            context = " ".join(part.strip() for part in lines[max(0, i - 1) : i + 4])
            if not (_ERROR_WORDS.search(context) or STATUS.search(context) or find_reply_code(context)):
                continue
            events.append(failure(NAME, address, context))
    return events


_CODE_LINE = re.compile(r"^.*(?:\b[245]\d\d[ -]|(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?![\d.])).*$", re.MULTILINE)


def error_lines(notice: str) -> str:
    """The lines of a notice that carry an SMTP reply or status code, joined."""
    return " ".join(m.group(0).strip() for m in _CODE_LINE.finditer(notice))


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    if not notice.strip():
        return None
    own = _own_addresses(report)
    for layout in (_colon_list, _introduced_list, _scattered):
        events = unique(layout(notice, own))
        if events:
            if len(events) == 1 and not events[0].status:
                # one recipient and no error next to it: the notice's SMTP reply is about it
                line = _CODE_LINE.search(notice)
                if line:
                    events = [failure(NAME, events[0].recipient, f"{events[0].diagnostic} {line.group(0)}")]
            return events
    return None
