"""Any RFC 3464 / RFC 6533 delivery status notification the specific detectors did not claim."""

from __future__ import annotations

import re

from processor.parse.mta._common import address_paragraphs, from_dsn
from processor.parse.report import Report
from processor.records import Event

NAME = "rfc3464"

_RCPT_LINE = re.compile(r"^\s*<?([^\s<>()]+@[^\s<>()]+?)>?(?::|\s|$)")


def matches(report: Report) -> bool:
    return report.dsn is not None and bool(report.dsn.recipients)


def parse(report: Report) -> list[Event] | None:
    texts = {addr.lower(): said for addr, said in address_paragraphs(report.notice, _RCPT_LINE) if said.strip()}
    return from_dsn(NAME, report, texts) or None
