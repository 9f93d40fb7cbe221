"""Gmail's bounces: the plain-text form ("Delivery to the following recipient failed
permanently:" with "Technical details of permanent failure:") and the newer HTML+DSN form."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, strip_address
from processor.records import Event, EventKind

NAME = "gmail"

_LIST = re.compile(
    r"Delivery to the following recipients? (failed permanently|has been delayed|failed)\s*:?", re.IGNORECASE
)
_DETAILS = re.compile(r"Technical details of (?:permanent|temporary) failure:\s*", re.IGNORECASE)
_RETURNED = re.compile(r"The error that the other server returned was:\s*", re.IGNORECASE)
_RESPONSE = re.compile(r"^The response (?:from the remote server )?was:\s*$", re.IGNORECASE | re.MULTILINE)


_HEADING = re.compile(r"^\*\*\s*([A-Za-z][^*\n]{2,60}?)\s*\*\*[ \t]*$", re.MULTILINE)
"""The newer plain-text form: "** Address not found **", "** Delivery incomplete **", ..."""
_TEMPORARY = re.compile(r"\b(?:incomplete|delayed|temporary problem|will (?:retry|keep trying))\b", re.IGNORECASE)


def matches(report: Report) -> bool:
    sender = report.from_address
    if sender.startswith("mailer-daemon@") and sender.endswith(("@googlemail.com", "@google.com", "@gmail.com")):
        return True
    # the same notice forwarded, or kept without its headers: the heading and Gmail's reply line
    notice = report.notice
    return "**" in notice[:2000] and _HEADING.search(notice[:2000]) is not None and (
        _RESPONSE.search(notice) is not None or "Gmail" in notice[:2000]
    )


def _headed(notice: str) -> list[Event] | None:
    """"** Heading **", then a paragraph naming the recipient, then (maybe) the remote reply."""
    heading = _HEADING.search(notice)
    if heading is None:
        return None
    paragraph = notice[heading.end() :].strip().split("\n\n")[0]
    found = ADDRESS.search(paragraph)
    if found is None:
        return None
    said = paragraph
    m = _RESPONSE.search(notice)
    if m:
        said = notice[m.end() :].strip().split("\n\n")[0]
    delayed = _TEMPORARY.search(heading.group(1) + " " + paragraph) is not None
    kind = EventKind.DELAY if delayed else EventKind.FAILURE
    return [failure(NAME, strip_address(found.group(1)), said, kind=kind)]


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    if report.dsn is not None and report.dsn.recipients:
        said = ""
        m = _RESPONSE.search(notice)
        if m:
            said = notice[m.end() :].strip().split("\n\n")[0]
        texts = {r.recipient.lower(): said for r in report.dsn.recipients} if said else {}
        return from_dsn(NAME, report, texts) or None
    listed = _LIST.search(notice)
    if not listed:
        return _headed(notice)
    delayed = "delayed" in listed.group(1).lower()
    rest = notice[listed.end() :]
    details = _DETAILS.search(rest)
    head = rest[: details.start()] if details else rest
    recipients = [strip_address(m.group(1)) for m in ADDRESS.finditer(head.split("\n\n\n")[0])]
    said = ""
    if details:
        said = rest[details.end() :]
        returned = _RETURNED.search(said)
        if returned:
            said = said[returned.end() :]
        said = said.strip()
    kind = EventKind.DELAY if delayed else EventKind.FAILURE
    return unique(failure(NAME, r, said, kind=kind) for r in recipients) or None
