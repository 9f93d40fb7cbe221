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
    "Sent <<< RCPT TO:",
)
_GATEWAY_HEADERS = ("x-mxl-hash", "x-mxl-notehash", "x-barracuda-connect", "x-surfcontrol", "x-mfilter", "x-hm-spam")
_DELIVER_TO = re.compile(r"(?:Unable to deliver message to|could not be delivered to)\s*<([^<>\s]+@[^<>\s]+)>(.*)$",
                         re.IGNORECASE | re.MULTILINE)
_SENT_RCPT = re.compile(r"^\s*Sent\s*<<<\s*RCPT TO:\s*<?([^<>\s]+@[^<>\s]+)>?\s*\n\s*Received\s*>>>\s*(.*)$",
                        re.IGNORECASE | re.MULTILINE)
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
    commands: dict[str, str] = {}
    for pattern in (_SENT_RCPT, _ANGLE_REASON, _BRACKET_REASON, _DELIVER_TO):
        for m in pattern.finditer(notice):
            said = m.group(2).strip()
            if pattern is _SENT_RCPT:
                commands[strip_address(m.group(1)).lower()] = "RCPT"
            elif pattern is _DELIVER_TO:
                said = " ".join(line.strip() for line in notice.split("\n") if line.strip().lower().startswith(
                    ("reason", "error", "<<<", ">>>", "sent", "received"))) or said
            texts.setdefault(strip_address(m.group(1)).lower(), said)
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(NAME, report, texts, commands=commands) or None
    return unique(failure(NAME, a, said, command=commands.get(a, "")) for a, said in texts.items()) or None
