"""Postfix: "This is the mail system at host ..." (or the older "This is the Postfix program")
with "<address>: host ... said: ... (in reply to RCPT TO command)" paragraphs, usually with a DSN
part; and the "errors from" session transcripts Postfix mails to the postmaster."""

from __future__ import annotations

import re

from processor.parse.mta._common import address_paragraphs, failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, REPLY_AT_START, strip_address
from processor.records import Event, EventKind

NAME = "postfix"

_ADDRESS_LINE = re.compile(r"^\s{0,2}<([^<>\s]+@?[^<>\s]*)>(?:\s*\(expanded from <[^<>]*>\))?:")
_STOP = re.compile(r"^\s*(?:-{2,}|Reporting-MTA:|Content-Type:|Final-Recipient:)", re.IGNORECASE | re.MULTILINE)
_IN = re.compile(r"^\s*In:\s+(.*)$")
_OUT = re.compile(r"^\s*Out:\s+(.*)$")


def matches(report: Report) -> bool:
    head = report.head
    return (
        "(postfix)" in report.origin_received
        or "This is the mail system at host" in head
        or "This is the Postfix program" in head
        or "Transcript of session follows." in head
        or (report.dsn is not None and "x-postfix-queue-id" in report.dsn.extra)
    )


def _transcript(notice: str) -> list[Event]:
    """Recipients and the error from an In:/Out: session transcript."""
    recipients: list[str] = []
    last_command = ""
    for raw in notice.split("\n"):
        sent = _IN.match(raw)
        if sent:
            last_command = sent.group(1).strip()
            if last_command.upper().startswith("RCPT"):
                found = ADDRESS.search(last_command)
                if found:
                    recipients.append(strip_address(found.group(1)))
            continue
        out = _OUT.match(raw)
        if out:
            reply = out.group(1).strip()
            code = REPLY_AT_START.match(reply)
            if code and code.group(1)[0] in "45":
                verb = last_command.split(":")[0].split()[0].upper() if last_command else ""
                command = {"RCPT": "RCPT", "MAIL": "MAIL", "DATA": "DATA", "EHLO": "EHLO", "HELO": "EHLO"}.get(verb, "")
                if verb == "RCPT" and recipients:
                    return [failure(NAME, recipients[-1], reply, command="RCPT")]
                kind = EventKind.DELAY if code.group(1)[0] == "4" else EventKind.FAILURE
                return [failure(NAME, r, reply, command=command or "DATA", kind=kind) for r in recipients]
    return []


def parse(report: Report) -> list[Event] | None:
    return parse_as(NAME, report)


def parse_as(name: str, report: Report) -> list[Event] | None:
    """Postfix's reading, for providers that run Postfix under their own name (Yandex, ...)."""
    notice = report.notice
    pairs = address_paragraphs(notice, _ADDRESS_LINE, _STOP)
    texts = {address.lower(): said for address, said in pairs}
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(name, report, texts) or None
    if pairs:
        delayed = "delayed mail" in report.subject.lower() or "will not be returned" in notice.lower()
        kind = EventKind.DELAY if delayed else EventKind.FAILURE
        return unique(failure(name, address, said, kind=kind) for address, said in pairs if "@" in address) or None
    if "Transcript of session follows" in notice:
        return _transcript(notice) or None
    return None
