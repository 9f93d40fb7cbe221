"""GMX and WEB.DE (1&1): Exim-style notices with quoted addresses ("addr":) and "SMTP error
from remote server after RCPT command"."""

from __future__ import annotations

from processor.parse.mta import exim
from processor.parse.report import Report
from processor.records import Event

NAME = "gmx"


def matches(report: Report) -> bool:
    sender = report.from_address
    return sender.startswith("mailer-daemon@") and (
        ".gmx." in sender or sender.endswith(("@gmx.net", "@gmx.com", "@gmx.de", "@web.de", "@kundenserver.de"))
    )


def parse(report: Report) -> list[Event] | None:
    return exim.parse_as(NAME, report)
