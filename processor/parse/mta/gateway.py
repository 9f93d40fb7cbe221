"""Mail-security gateways that return mail themselves: McAfee (MXLogic), Barracuda, Trend Micro
InterScan, SurfControl, m-FILTER, ActiveHunter, MailFoundry and similar. Their notices name the
address with the reason beside it; most also carry a DSN part."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import strip_address
from processor.records import Event

NAME = "gateway"

_MARKERS = (
    "--- The following addresses had delivery problems ---",
    "was blocked by our Spam Firewall",
    "Message from InterScan Messaging Security Suite",
    "Your message could not be sent.",
    "-------SMTP command",
    "Delivery failed for the following reason",
    "---The following addresses had delivery errors---",
)
_GATEWAY_HEADERS = ("x-mxl-hash", "x-mxl-notehash", "x-barracuda-connect", "x-surfcontrol", "x-mfilter", "x-hm-spam")
_ANGLE_REASON = re.compile(r"^\s*<([^<>\s]+@[^<>\s]+)>\s+\((.*)\)\s*$", re.MULTILINE)
_BRACKET_REASON = re.compile(r"^\s*([^\s<>\[]+@[^\s<>\[]+)\s+\[(.*)\]\s*$", re.MULTILINE)


def matches(report: Report) -> bool:
    if any(name in report.headers for name in _GATEWAY_HEADERS):
        return True
    head = report.text[:1500]
    return any(marker in head for marker in _MARKERS)


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    texts: dict[str, str] = {}
    for pattern in (_ANGLE_REASON, _BRACKET_REASON):
        for m in pattern.finditer(notice):
            texts.setdefault(strip_address(m.group(1)).lower(), m.group(2))
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(NAME, report, texts) or None
    return unique(failure(NAME, address, said) for address, said in texts.items()) or None
