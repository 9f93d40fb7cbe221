"""Complaint (feedback-loop) reports: RFC 5965 ARF, RFC 6591 auth-failure reports, and the
non-ARF styles of Microsoft's JMRP/SNDS and older Yahoo reports."""

from __future__ import annotations

import re

from processor.parse.mime import Headers, parse_header_block
from processor.parse.report import Report
from processor.parse.text import ADDRESS, one_line, strip_address
from processor.records import Event, EventKind

_HOTMAIL_SUBJECT = re.compile(r"complaint about message from|^\s*(?:\[fbl\]|fbl report)", re.IGNORECASE)
_CORRELATION_RCPT = ("x-hmxmroriginalrecipient", "x-original-rcpt-to", "x-rcpt-to", "x-envelope-to")


_ARF_FIELDS = re.compile(r"^feedback-type:[ \t]*[a-z-]+[ \t]*$", re.IGNORECASE | re.MULTILINE)
"""An ARF field block in a part labelled otherwise (text/plain, message/feedback_report, ...)."""


def _feedback_fields(report: Report) -> Headers | None:
    """The ARF fields: of the message/feedback-report part, or of a part labelled otherwise that
    carries them (text/plain, message/feedback_report read as an enclosed message, ...)."""
    for part in report.top_parts:
        if part.content_type == "message/feedback-report":
            return parse_header_block(part.text)
    for part in report.top_parts:
        kind = part.content_type
        if not ("feedback" in kind or kind == "text/plain"):
            continue
        if _ARF_FIELDS.search(part.text[:1000]):
            return parse_header_block(part.text)
        if kind.startswith("message/") and part.children and "feedback-type" in part.children[0].headers:
            return part.children[0].headers
    return None


def is_complaint(report: Report) -> bool:
    """Cheap guard: an ARF part, an ARF report type, or a Microsoft/Yahoo-style complaint."""
    root = report.root
    report_type = root.params.get("report-type", "").lower().strip('"')
    if root.content_type == "multipart/report" and report_type == "feedback-report":
        return True
    if report.has_part("message/feedback-report"):
        return True
    if report_type == "feedback-report" or root.content_type == "multipart/report":
        # a feedback report whose ARF part carries another label
        return _feedback_fields(report) is not None
    if _HOTMAIL_SUBJECT.search(report.subject):
        original = report.original_headers
        return any(name in original for name in _CORRELATION_RCPT) or bool(original.get("to"))
    return False


def _real(address: str) -> str:
    """The address if it looks like one; '' for a redacted or placeholder value."""
    address = strip_address(address)
    if not address or "@" not in address or not ADDRESS.fullmatch(address):
        return ""
    if address.lower().startswith(("undisclosed", "redacted@redacted")):
        return ""
    return address


def parse(report: Report) -> list[Event] | None:
    """Events for a complaint report, one per complained-about recipient; None if not a complaint."""
    if not is_complaint(report):
        return None
    fields = _feedback_fields(report) or Headers([])
    original = report.original_headers
    feedback_type = one_line(fields.get("feedback-type")).lower() or "abuse"
    recipients = [_real(v) for v in fields.get_all("original-rcpt-to")]
    recipients = [r for r in recipients if r]
    if not recipients:
        for name in _CORRELATION_RCPT:
            found = _real(original.get(name))
            if found:
                recipients = [found]
                break
    if not recipients:
        found = _real(original.get("to"))
        if found:
            recipients = [found]
    if not recipients:
        recipients = [""]  # redacted by the reporter: still a complaint, recorded without an address
    arrival = one_line(fields.get("arrival-date") or fields.get("received-date"))
    source_ip = one_line(fields.get("source-ip")).strip("[]")
    agent = one_line(fields.get("user-agent"))
    diagnostic_bits = [
        f"{name}: {one_line(fields.get(name))}"
        for name in ("auth-failure", "delivery-result", "reported-domain", "reported-uri", "authentication-results")
        if fields.get(name)
    ]
    return [
        Event(
            kind=EventKind.COMPLAINT,
            recipient=rcpt,
            feedback_type=feedback_type,
            arrival_date=arrival,
            source_ip=source_ip,
            user_agent=agent,
            diagnostic="; ".join(diagnostic_bits),
            mta="arf" if fields else "complaint",
        )
        for rcpt in dict.fromkeys(recipients)
    ]
