"""Amazon SES: JSON notifications delivered by Amazon SNS over e-mail (Bounce, Complaint and
Delivery), and the DSNs SES itself sends."""

from __future__ import annotations

import json
import re
from typing import Any

from processor.parse.mta._common import failure, from_dsn
from processor.parse.report import Report
from processor.records import Event, EventKind

NAME = "amazonses"

_JSON_START = re.compile(r'\{\s*"(?:notificationType|eventType|Type|Message)"')


def matches(report: Report) -> bool:
    sender = report.from_address
    return (
        sender.endswith("@sns.amazonaws.com")
        or "x-ses-outgoing" in report.headers
        or "amazonses.com" in report.received
        or '"notificationType"' in report.text[:400]
    )


def _load(text: str) -> dict[str, Any] | None:
    m = _JSON_START.search(text)
    if not m:
        return None
    decoder = json.JSONDecoder()
    try:
        value, _ = decoder.raw_decode(text[m.start() :].replace("\n", ""))
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
        transient = str(bounce.get("bounceType", "")).lower() == "transient"
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
                    kind=EventKind.DELAY if transient and not diagnostic.strip().startswith("5") else EventKind.FAILURE,
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
