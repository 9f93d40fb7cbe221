"""Microsoft Exchange 2003 ("did not reach the following recipient(s)"), Exchange 2007 and later,
Office 365 and Outlook.com ("Delivery has failed to these recipients", "Diagnostic information for
administrators", "Remote Server returned '...'")."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, strip_address
from processor.records import Event

NAME = "exchange"

_SUBJECT = re.compile(r"^(?:undeliverable|undelivered|unzustellbar|non remis|no se puede entregar)\s*:", re.I)
_2003_LIST = re.compile(r"did not reach the following recipient\(s\):\s*$", re.IGNORECASE | re.MULTILINE)
_2003_RCPT = re.compile(r"^(\S+@\S+) on .+$")
_ADMIN = re.compile(r"Diagnostic information for administrators:", re.IGNORECASE)
_RETURNED = re.compile(
    r"(?:Remote Server (?:at \S+ (?:\([^)]*\) )?)?returned|returned)\s+'([^']+)'", re.IGNORECASE | re.DOTALL
)
_NOT_DIAGNOSTIC = ("generating server", "receiving server", "original message headers")
_CODE_LINE = re.compile(r"^#?([245]\d\d[ -][245]\.\d+\.\d+.*?)(?:##)?\s*$", re.MULTILINE)


def matches(report: Report) -> bool:
    headers = report.headers
    return (
        "microsoft smtpsvc" in report.origin_received
        or ("microsoft smtpsvc" in report.received and _SUBJECT.search(report.subject) is not None)
        or "x-ms-exchange-message-is-ndr" in headers
        or "x-dsncontext" in headers
        or "internet mail service" in headers.get("x-mailer").lower()
        or "microsoft exchange" in headers.get("x-mailer").lower()
        or "x-ms-exchange-crosstenant-id" in headers
        or (_SUBJECT.search(report.subject) is not None and (
            "Diagnostic information for administrators" in report.text
            or "did not reach the following recipient" in report.text))
    )


def _admin_texts(notice: str) -> dict[str, str]:
    """What the administrators' section says about each recipient."""
    m = _ADMIN.search(notice)
    if not m:
        return {}
    section = notice[m.end() :]
    texts: dict[str, list[str]] = {}
    current = ""
    for line in section.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if ADDRESS.fullmatch(stripped.strip("<>")):
            current = strip_address(stripped).lower()
            texts.setdefault(current, [])
            continue
        if current and not stripped.lower().startswith(_NOT_DIAGNOSTIC):
            texts[current].append(stripped)
    out: dict[str, str] = {}
    for address, lines in texts.items():
        block = "\n".join(lines)
        said = [r.strip() for r in _RETURNED.findall(block)] or [c.strip() for c in _CODE_LINE.findall(block)]
        out[address] = " ".join(said) if said else " ".join(lines[:3])
    return out


def _exchange_2003(notice: str) -> list[Event]:
    m = _2003_LIST.search(notice)
    if not m:
        return []
    events: list[Event] = []
    current = ""
    lines: list[str] = []
    for line in notice[m.end() :].split("\n"):
        found = _2003_RCPT.match(line.strip())
        if found and not line[:1].isspace():
            if current:
                events.append(failure(NAME, current, " ".join(lines)))
            current, lines = found.group(1), []
        elif current and line.strip():
            lines.append(line.strip())
    if current:
        events.append(failure(NAME, current, " ".join(lines)))
    return events


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    texts = _admin_texts(notice)
    if report.dsn is not None and report.dsn.recipients:
        for rcpt in report.dsn.recipients:
            said = texts.get(rcpt.recipient.lower(), "")
            if said and said not in rcpt.diagnostic:
                rcpt.diagnostic = f"{rcpt.diagnostic} {said}".strip()
        return from_dsn(NAME, report) or None
    events = _exchange_2003(notice)
    if not events and texts:
        events = [failure(NAME, address, said) for address, said in texts.items()]
    return unique(events) or None
