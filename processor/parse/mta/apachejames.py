"""Apache James: "Error message below:" with the recipient in the "Message details" list."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.records import Event

NAME = "apachejames"

_ERROR = re.compile(r"Error message below:\s*\n(.*?)(?:\n\s*\n|\Z)", re.IGNORECASE | re.DOTALL)
_RCPT = re.compile(r"^\s*RCPT TO:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def matches(report: Report) -> bool:
    return "Message details:" in report.text and "Error message below:" in report.text


def parse(report: Report) -> list[Event] | None:
    error = _ERROR.search(report.text)
    said = error.group(1) if error else ""
    return [failure(NAME, m.group(1), said) for m in _RCPT.finditer(report.text)] or None
