"""Sun Java System / Oracle Communications Messaging Server (and PMDF): "This report relates to a
message you sent with the following header fields:" and "Recipient address: ... Reason: ..."."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import strip_address
from processor.records import Event, EventKind

NAME = "messagingserver"

_FIELD = re.compile(r"^\s{0,4}(Recipient address|Original address|Reason|Diagnostic code|Remote system):\s*(.*)$", re.I)


def matches(report: Report) -> bool:
    return "This report relates to a message you sent" in report.head or "messaging server" in report.origin_received


def _blocks(notice: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in notice.split("\n"):
        m = _FIELD.match(line)
        if not m:
            continue
        name, value = m.group(1).lower(), m.group(2).strip()
        if name == "recipient address":
            current = strip_address(value).lower()
            out.setdefault(current, [])
        elif current and name in ("reason", "diagnostic code"):
            out[current].append(value.split(";", 1)[1].strip() if name == "diagnostic code" and ";" in value else value)
    return {address: " ".join(said) for address, said in out.items()}


def parse(report: Report) -> list[Event] | None:
    texts = _blocks(report.notice)
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(NAME, report, texts) or None
    delayed = "has been delayed" in report.subject.lower() or "enqueued and undeliverable" in report.notice
    kind = EventKind.DELAY if delayed else EventKind.FAILURE
    return unique(failure(NAME, address, said, kind=kind) for address, said in texts.items() if address) or None
