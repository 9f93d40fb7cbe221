"""Amazon SES: JSON notifications delivered by Amazon SNS over e-mail (Bounce, Complaint and
Delivery), and the DSNs SES itself sends."""

from __future__ import annotations

import json
from typing import Any

from processor.parse.mta._common import failure, from_dsn
from processor.parse.report import Report
from processor.records import Event, EventKind

NAME = "amazonses"

_JSON_KEYS = ('"notificationType"', '"eventType"', '"Type"')


def matches(report: Report) -> bool:
    sender = report.from_address
    return (
        sender.endswith("@sns.amazonaws.com")
        or "x-ses-outgoing" in report.headers
        or "amazonses.com" in report.origin_received
        or any(key in report.head for key in _JSON_KEYS)
    )


def _load(text: str) -> dict[str, Any] | None:
    """The first JSON object in the text (an SES event, or the SNS envelope around one)."""
    start = text.find("{")
    if start == -1 or not any(key in text for key in _JSON_KEYS):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:].replace("\n", ""))
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("Message"), str):  # an SNS envelope
        try:
            inner = json.loads(value["Message"])
        except ValueError:
            return None
        return inner if isinstance(inner, dict) else None
    return value if isinstance(value, dict) else None


def _from_json(doc: dict[str, Any]) -> list[Event]:
    kind = str(doc.get("notificationType") or doc.get("eventType") or "")
    mail = doc.get("mail") or {}
    events: list[Event] = []
    if kind == "Bounce":
        bounce = doc.get("bounce") or {}
        for rcpt in bounce.get("bouncedRecipients") or []:
            diagnostic = str(rcpt.get("diagnosticCode") or "")
            if ";" in diagnostic[:10]:
                diagnostic = diagnostic.split(";", 1)[1]
            events.append(
                failure(
                    NAME,
                    str(rcpt.get("emailAddress", "")),
                    diagnostic or f"{bounce.get('bounceType', '')} {bounce.get('bounceSubType', '')}",
                    status=str(rcpt.get("status") or ""),
                    remote_mta=str(bounce.get("remoteMtaIp") or ""),
                )
            )
    elif kind == "Complaint":
        complaint = doc.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        for rcpt in complaint.get("complainedRecipients") or []:
            events.append(
                Event(
                    kind=EventKind.COMPLAINT,
                    recipient=str(rcpt.get("emailAddress", "")),
                    feedback_type=feedback,
                    user_agent=str(complaint.get("userAgent") or ""),
                    arrival_date=str(complaint.get("arrivalDate") or complaint.get("timestamp") or ""),
                    mta=NAME,
                )
            )
    elif kind == "Delivery":
        delivery = doc.get("delivery") or {}
        response = str(delivery.get("smtpResponse") or "")
        for address in delivery.get("recipients") or []:
            events.append(failure(NAME, str(address), response, kind=EventKind.DELIVERED, dsn_action="delivered"))
    if events and isinstance(mail, dict):
        return events
    return events


def parse(report: Report) -> list[Event] | None:
    doc = _load(report.text)
    if doc is not None:
        return _from_json(doc) or None
    if report.dsn is not None and report.dsn.recipients:
        return from_dsn(NAME, report) or None
    return None
