"""DragonFly Mail Agent (dma): "There was an error delivering your mail to <address>." followed
by what the remote host did not like."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.records import Event

NAME = "dragonfly"

_RECIPIENT = re.compile(r"There\s+was\s+an\s+error\s+delivering\s+your\s+mail\s+to\s+<([^<>\s]+)>\.?", re.IGNORECASE)
"""(Any white space between the words: a notice re-wrapped at another width breaks the line anywhere.)"""
_DID_NOT_LIKE = re.compile(r"did not like our ([A-Z]+(?: [A-Z]+)?|final DATA)", re.IGNORECASE)


def matches(report: Report) -> bool:
    return "dragonfly mail agent" in report.origin_received or "This is the DragonFly Mail Agent" in report.head


def parse(report: Report) -> list[Event] | None:
    m = _RECIPIENT.search(report.notice)
    if not m:
        return None
    said = report.notice[m.end() :].strip()
    command = ""
    verb = _DID_NOT_LIKE.search(said)
    if verb:
        word = verb.group(1).upper()
        command = next((c for c in ("RCPT", "MAIL", "DATA") if c in word), word)
    return [failure(NAME, m.group(1), said, command=command)]
