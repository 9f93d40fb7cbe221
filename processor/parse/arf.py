"""Complaint (feedback-loop) reports: RFC 5965 ARF, RFC 6591 auth-failure reports, and the
non-ARF styles of Microsoft's JMRP/SNDS and older Yahoo reports."""

from __future__ import annotations

import re

from processor.parse.mime import Headers, parse_header_block
from processor.parse.report import Report
from processor.parse.text import ADDRESS, may_match, one_line, strip_address
from processor.records import Event, EventKind

_HOTMAIL_SUBJECT = re.compile(r"complaint about message from|^\s*(?:\[fbl\]|fbl report)", re.IGNORECASE)
_HOTMAIL_SUBJECT_WORDS = ("complaint about message from", "fbl")
"""Every subject ``_HOTMAIL_SUBJECT`` matches contains one of these (lower-cased)."""
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)
_CORRELATION_RCPT = ("x-hmxmroriginalrecipient", "x-original-rcpt-to", "x-rcpt-to", "x-envelope-to")


_FIELDS_IN_TEXT = re.compile(r"^Feedback-Type:[ \t]*[\w-]+[ \t]*$", re.IGNORECASE | re.MULTILINE)
_REPORT_FIELDS = ("user-agent", "version", "original-rcpt-to", "original-mail-from", "arrival-date", "source-ip")


def _feedback_fields(report: Report) -> Headers | None:
    """``_find_feedback_fields``, once per report."""
    if "feedback_fields" not in report.memo:
        report.memo["feedback_fields"] = _find_feedback_fields(report)
    found: Headers | None = report.memo["feedback_fields"]
    return found


def _find_feedback_fields(report: Report) -> Headers | None:
    """The feedback report's fields: from its message/feedback-report part or, from reporters
    that send it as another type (text/plain, a misspelt type, an enclosed message), from a part
    whose text is a block of feedback fields (Feedback-Type and at least one other RFC 5965 field)."""
    for part in report.top_parts:
        if part.content_type == "message/feedback-report":
            return parse_header_block(part.text)
    for part in report.top_parts:
        kind = part.content_type
        if kind.startswith("message/") and part.children and "feedback-type" in part.children[0].headers:
            return part.children[0].headers
        if part.children or not ("feedback" in kind or kind == "text/plain"):
            continue
        text = part.text
        m = _FIELDS_IN_TEXT.search(text[:4000]) if may_match(text[:4000], ("feedback-type:",)) else None
        if m is None:
            continue
        fields = parse_header_block(text[m.start() :])
        if fields.get("feedback-type") and any(fields.get(name) for name in _REPORT_FIELDS):
            return fields
    return None


def forwarded_complaint(report: Report) -> Report | None:
    """A complaint report forwarded as an attachment (by a person, or a mailbox rule that sends
    a feedback-loop address's mail on): the enclosed report is the one to read."""
    enclosed = report.original_part
    if enclosed is None or report.dsn is not None or _DAEMON.search(report.from_header) or is_complaint(report):
        return None  # a bounce of a complaint report is a bounce
    inner = Report(enclosed)
    return inner if is_complaint(inner) else None


def is_complaint(report: Report) -> bool:
    """Cheap guard: an ARF part, an ARF report type, or a Microsoft/Yahoo-style complaint (asked
    twice of most reports: answered once)."""
    known = report.memo.get("is_complaint")
    if known is None:
        known = report.memo["is_complaint"] = _is_complaint(report)
    return bool(known)


def _is_complaint(report: Report) -> bool:
    root = report.root
    report_type = root.params.get("report-type", "").lower().strip('"')
    if root.content_type == "multipart/report" and report_type == "feedback-report":
        return True
    if report.has_part("message/feedback-report") or _feedback_fields(report) is not None:
        return True
    subject = report.subject
    if may_match(subject, _HOTMAIL_SUBJECT_WORDS) and _HOTMAIL_SUBJECT.search(subject):
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
