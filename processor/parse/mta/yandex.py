"""Yandex: Postfix notices with a Russian preface, "This is the mail system at host yandex.ru"."""

from __future__ import annotations

from processor.parse.mta import postfix
from processor.parse.report import Report
from processor.records import Event

NAME = "yandex"


def matches(report: Report) -> bool:
    sender = report.from_address
    return sender.startswith("mailer-daemon@") and (sender.endswith(("yandex.ru", "yandex.com", "yandex.net")))


def parse(report: Report) -> list[Event] | None:
    return postfix.parse_as(NAME, report)
