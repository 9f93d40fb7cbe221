"""Amazon WorkMail: "An error occurred while trying to deliver the mail to the following
recipients:" with the DSN fields pasted as a "Technical report"."""

from __future__ import annotations

from processor.parse.mta._common import from_dsn
from processor.parse.report import Report
from processor.records import Event

NAME = "amazonworkmail"


def matches(report: Report) -> bool:
    return "amazon workmail" in report.headers.get("x-mailer").lower() or "workmail" in report.origin_received


def parse(report: Report) -> list[Event] | None:
    return from_dsn(NAME, report) or None
