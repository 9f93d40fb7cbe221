"""Mail-security gateways and filters that return mail themselves: McAfee (MXLogic), Barracuda,
Trend Micro InterScan, SurfControl, m-FILTER, Active!hunter, MailFoundry and similar.

Their notices name the address with the reason beside it; most also carry a DSN part. Events are
tagged with the product (``mta``), because what a product's wording means differs: a content
filter that accepted the message and then failed to hand it on reports after the data stage.
"""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import strip_address
from processor.records import Event

NAME = "gateway"

# (product, header names, X-Mailer/From fragments, notice markers)
_PRODUCTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("mcafee", ("x-mxl-hash", "x-mxl-notehash"), ("mcafee", "mxlogic"),
     ("--- The following addresses had delivery problems ---",)),
    ("barracuda", ("x-barracuda-connect",), ("barracuda",), ("was blocked by our Spam Firewall",)),
    ("trendmicro", (), ("interscan",), ("Message from InterScan Messaging Security Suite", "Sent <<< RCPT TO:")),
    ("surfcontrol", ("x-surfcontrol",), ("surfcontrol",), ("Your message could not be sent.",)),
    ("mfilter", ("x-mfilter",), ("m-filter",), ("-------SMTP command",)),
    ("mailfoundry", (), ("mailfoundry",), ("Delivery failed for the following reason",)),
    ("activehunter", (), ("active!hunter",), ()),
    ("gateway", ("x-hm-spam",), (), ("---The following addresses had delivery errors---",)),
)
_HEADER_NAMES = frozenset(header for _, names, _, _ in _PRODUCTS for header in names)
_FRAGMENTS = tuple(fragment for _, _, fragments, _ in _PRODUCTS for fragment in fragments)
_MARKERS = tuple(marker for _, _, _, markers in _PRODUCTS for marker in markers)
"""Every header, fragment and marker of ``_PRODUCTS``: when none is there (most messages), no
product is, and the per-product loop is not run."""
_DELIVER_TO = re.compile(
    r"(?:Unable to deliver message to|could not be delivered to):?\s*<([^<>\s]+@[^<>\s]+)>(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_SENT_RCPT = re.compile(
    r"^\s*Sent\s*<<<\s*RCPT TO:\s*<?([^<>\s]+@[^<>\s]+)>?\s*\n\s*Received\s*>>>\s*(.*)$", re.IGNORECASE | re.MULTILINE
)
_ANGLE_REASON = re.compile(r"^\s*<([^<>\s]+@[^<>\s]+)>\s+\((.*)\)\s*$", re.MULTILINE)
_BRACKET_REASON = re.compile(r"^\s*([^\s<>\[]+@[^\s<>\[]+)\s+\[(.*)\]\s*$", re.MULTILINE)
_MFILTER = re.compile(
    r"^([^\s@]+@[^\s@]+)\s*\n-+\s*server message\s*\n(.*?)\n-+\s*SMTP command\s*\n\s*([A-Za-z]+)",
    re.MULTILINE | re.DOTALL,
)
_FOUNDRY = re.compile(r"Delivery failed for the following reason:\s*\n(.*?)(?:\n\s*\n|\Z)", re.IGNORECASE | re.DOTALL)
_ACTIVEHUNTER = re.compile(r"^>>>\s+(\S+@\S+)", re.MULTILINE)


PRODUCTS = tuple(name for name, *_ in _PRODUCTS)
"""The ``mta`` names this detector gives its events."""


def product(report: Report) -> str:
    """Which gateway wrote the report ('' if none we know); asked by the guard and again by the
    parser, answered once."""
    known = report.memo.get(NAME)
    if known is None:
        known = report.memo[NAME] = _product(report)
    return str(known)


def _product(report: Report) -> str:
    boundary = report.root.params.get("boundary", "")
    signature = f"{report.headers.get('x-mailer')} {report.from_header} {boundary}".lower()
    head = report.head
    headers = report.headers
    if not (
        headers.has_any(_HEADER_NAMES)
        or any(fragment in signature for fragment in _FRAGMENTS)
        or any(marker in head for marker in _MARKERS)
    ):
        return ""
    for name, names, fragments, markers in _PRODUCTS:  # plain loops: this runs for most messages
        for header in names:
            if header in headers:
                return name
        for fragment in fragments:
            if fragment in signature:
                return name
        for marker in markers:
            if marker in head:
                return name
    return ""


def matches(report: Report) -> bool:
    return bool(product(report))


def parse(report: Report) -> list[Event] | None:
    name = product(report)
    notice = report.notice
    texts: dict[str, str] = {}
    commands: dict[str, str] = {}
    for m in _MFILTER.finditer(notice):
        key = strip_address(m.group(1)).lower()
        texts[key] = " ".join(m.group(2).split())
        commands[key] = m.group(3).upper()
    for pattern in (_SENT_RCPT, _ANGLE_REASON, _BRACKET_REASON, _DELIVER_TO):
        for m in pattern.finditer(notice):
            key = strip_address(m.group(1)).lower()
            said = m.group(2).strip()
            if pattern is _SENT_RCPT:
                commands[key] = "RCPT"
            elif pattern is _DELIVER_TO:
                foundry = _FOUNDRY.search(notice)
                reasons = [
                    line.strip() for line in notice.split("\n")
                    if line.strip().lower().startswith(("reason", "error", "<<<", ">>>", "sent", "received"))
                ]
                said = " ".join(foundry.group(1).split()) if foundry else " ".join(reasons) or said
            texts.setdefault(key, said)
    if name == "activehunter":
        for m in _ACTIVEHUNTER.finditer(notice):
            transcript = notice.split("Transcript of session follows", 1)
            said = transcript[1].strip(" -\n") if len(transcript) == 2 else ""
            texts.setdefault(strip_address(m.group(1)).lower(), " ".join(said.split()))
    if report.dsn is not None and report.dsn.recipients:
        events = from_dsn(name, report, texts, commands=commands)
    else:
        events = [failure(name, a, said, command=commands.get(a, "")) for a, said in texts.items()]
    return unique(events) or None
