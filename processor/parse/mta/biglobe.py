"""BIGLOBE: "----- The following addresses had delivery problems -----" and
"----- Non-delivered information -----"."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, strip_address
from processor.records import Event

NAME = "biglobe"

_LIST = re.compile(r"^\s*-+\s*The following addresses had delivery problems\s*-+\s*$", re.I | re.M)
_INFO = re.compile(r"^\s*-+\s*Non-delivered information\s*-+\s*$", re.I | re.M)


def matches(report: Report) -> bool:
    return "biglobe.ne.jp" in report.from_address or "Non-delivered information" in report.text


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    listed, info = _LIST.search(notice), _INFO.search(notice)
    if not listed:
        return None
    addresses_part = notice[listed.end() : info.start() if info else len(notice)]
    said = notice[info.end() :].strip().split("\n\n")[0] if info else ""
    return unique(failure(NAME, strip_address(m.group(1)), said) for m in ADDRESS.finditer(addresses_part)) or None
