"""Verizon Wireless MMS gateways (vtext.com, vzwpix.com): "Message could not be delivered to
mobile." with the recipient only in the returned message's To: header."""

from __future__ import annotations

from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.parse.text import strip_address
from processor.records import Event

NAME = "verizon"


def matches(report: Report) -> bool:
    sender = report.from_address
    return sender.endswith(("vzwpix.com", "vtext.com")) or "Message could not be delivered to mobile" in report.text


def parse(report: Report) -> list[Event] | None:
    recipient = strip_address(report.original_headers.get("to"))
    if not recipient:
        return None
    said = " ".join(line.strip() for line in report.notice.split("\n") if line.strip())
    return [failure(NAME, recipient, said)]
