"""mail.ru (and bk.ru, list.ru, inbox.ru): Exim-based, a Russian notice followed by the English one."""

from __future__ import annotations

from processor.parse.mta import exim
from processor.parse.report import Report
from processor.records import Event

NAME = "mailru"


def matches(report: Report) -> bool:
    sender = report.from_address
    return sender.startswith("mailer-daemon@") and sender.endswith(("mail.ru", "@bk.ru", "@list.ru", "@inbox.ru"))


def parse(report: Report) -> list[Event] | None:
    return exim.parse_as(NAME, report)
