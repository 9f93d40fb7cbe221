"""From the raw bytes of one message to the delivery events it reports. Pure: no I/O.

    events = parse(data)

The order of analysis: a complaint report forwarded as an attachment is unwrapped; then complaints
(ARF and look-alikes), auto-replies (challenge-response included), the per-MTA detectors in
``mta.ORDER`` (each with a cheap guard first), the generic RFC 3464 reader, and a generic text
fallback. Then every event is completed from what the whole message says: the original
message's identity, a recipient recovered from a VERP return path, codes read from the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import fields
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from processor.parse import arf, autoreply, return_path
from processor.parse.dsn import is_internal_form
from processor.parse.mime import Headers, MimeError, normalise_newlines, read_message, trim_returned_body
from processor.parse.mta import ORDER, generic
from processor.parse.mta._common import failure
from processor.parse.report import Report
from processor.parse.text import addresses, find_command, find_reply_code, find_status, one_line, strip_address
from processor.parse_defaults import CORRELATION_HEADERS, MAX_MESSAGE_BYTES, VERP_PREFIXES
from processor.records import NO_ORIGINAL, Event, EventKind, OriginalMessage

if TYPE_CHECKING:  # the settings model imports pydantic: a parser with the defaults never needs it
    from processor.parse_settings import ParseSettings

__all__ = ["ParseError", "Parser", "parse"]

_NON_BLANK = re.compile(rb"\S")


NOTICE_CHARS = 2000
"""Characters of a one-recipient report's prose kept on its event (reports state the cause early)."""


_EVENT_FIELDS = tuple(f.name for f in fields(Event))
_EVENT_GETTER = attrgetter(*_EVENT_FIELDS)


def _event_values(event: Event) -> list[Any]:
    """Every field of an event, in the constructor's order: ``Event(*values)`` after a few are
    changed is ``dataclasses.replace`` without its per-call walk over the field definitions."""
    return list(_EVENT_GETTER(event))


(_RECIPIENT, _DIAGNOSTIC, _STATUS, _REPLY_CODE, _SMTP_COMMAND, _REPORTING_MTA, _BOUNCE_ADDRESS, _NOTICE, _ORIGINAL) = (
    _EVENT_FIELDS.index(name)
    for name in (
        "recipient", "diagnostic", "status", "reply_code", "smtp_command", "reporting_mta", "bounce_address", "notice",
        "original",
    )
)


class ParseError(Exception):
    """The input is not a message we can read at all (empty, or structurally unreadable)."""


class Parser:
    """A parser configured once (size limit, correlation headers, VERP prefixes)."""

    def __init__(self, settings: ParseSettings | None = None) -> None:
        self.settings = settings
        """The [parse] settings given; None for the defaults (``processor.parse_defaults``)."""
        correlation: tuple[str, ...]
        prefixes: tuple[str, ...]
        if settings is None:
            max_bytes, correlation, prefixes = MAX_MESSAGE_BYTES, CORRELATION_HEADERS, VERP_PREFIXES
        else:
            max_bytes, correlation, prefixes = (
                settings.max_message_bytes, tuple(settings.correlation_headers), tuple(settings.verp_prefixes)
            )
        self._max_bytes = max(1024, max_bytes)
        self._correlation = tuple(h.lower() for h in correlation)
        self._verp_prefixes = tuple(prefixes)

    def parse(self, data: bytes) -> list[Event]:
        """The events one message reports ([] for a message that reports nothing)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ParseError(f"expected the bytes of a message, got {type(data).__name__}")
        if not isinstance(data, bytes) or len(data) > self._max_bytes:
            data = bytes(data[: self._max_bytes])
        if not _NON_BLANK.search(data):  # (no strip(): it would copy a big message)
            raise ParseError("empty message")
        if data.startswith(b"From ") and b"\n" in data[:1000]:
            data = data.split(b"\n", 1)[1]  # an mbox envelope line
        data = normalise_newlines(data)
        trimmed = trim_returned_body(data)
        report, events = self._read(trimmed)
        if not events and trimmed is not data:
            # nothing found in the report itself: the returned message may be a bounce of its own
            report, events = self._read(data)
        if not events:
            return []
        return self._complete(report, events)

    def _read(self, data: bytes) -> tuple[Report, list[Event]]:
        try:
            root = read_message(data)
        except MimeError as exc:
            raise ParseError(str(exc)) from exc
        except RecursionError as exc:
            raise ParseError("message nesting is too deep to parse") from exc
        report = Report(root)
        try:
            report = arf.forwarded_complaint(report) or report
            events = self._detect(report)
            if not events:
                forwarded = self._forwarded_bounce(report)
                if forwarded is not None:
                    report = forwarded
                    events = self._detect(report)
            if not events:
                events = self._verp_only(report)
        except RecursionError as exc:
            raise ParseError("message nesting is too deep to parse") from exc
        return report, events

    def _detect(self, report: Report) -> list[Event]:
        for first in (arf.parse, autoreply.parse):
            found = first(report)
            if found:
                return found
        for detector in ORDER:
            if detector.matches(report):
                found = detector.parse(report)
                if found:
                    return found
        return []

    def _verp_only(self, report: Report) -> list[Event]:
        """A bounce that names no recipient at all, sent to a VERP address that does."""
        if not generic.matches(report):
            return []
        recipient = self._verp_recipient(report, self._original(report.original_headers))
        if not recipient:
            return []
        return [failure("verp", recipient, generic.error_lines(report.notice))]

    @staticmethod
    def _forwarded_bounce(report: Report) -> Report | None:
        """A bounce forwarded as an attachment (by a person or a fetchmail-style relay): the
        enclosed message is the report to read."""
        enclosed = report.original_part
        if enclosed is None:
            return None
        inner = Report(enclosed)
        if inner.looks_like_bounce_sender or enclosed.content_type == "multipart/report":
            return inner
        return None

    def _complete(self, report: Report, events: Sequence[Event]) -> list[Event]:
        original = self._original(report.original_headers)
        fallback_rcpt = ""
        if any(not e.recipient for e in events if e.kind is not EventKind.AUTO_REPLY):
            fallback_rcpt = self._verp_recipient(report, original)
        bounce_address = self._bounce_address(report)
        notice = ""
        if len(events) == 1 and events[0].kind in (EventKind.FAILURE, EventKind.DELAY):
            notice = one_line(report.notice[: NOTICE_CHARS * 2])[:NOTICE_CHARS]
        out: list[Event] = []
        seen: set[tuple[str, EventKind]] = set()
        for event in events:
            recipient = strip_address(event.recipient) if event.recipient else ""
            if not recipient and event.kind is not EventKind.AUTO_REPLY:
                recipient = fallback_rcpt
            if recipient and is_internal_form(recipient) and event.kind is not EventKind.AUTO_REPLY:
                recipient = _sender_used(event, original) or recipient
            key = (recipient.lower(), event.kind)
            if recipient and key in seen:
                continue
            seen.add(key)
            diagnostic = one_line(event.diagnostic)
            status = event.status or find_status(diagnostic)
            reply = event.reply_code or find_reply_code(diagnostic)
            if not status and reply and event.kind in (EventKind.FAILURE, EventKind.DELAY):
                status = f"{reply[0]}.0.0"
            values = _event_values(event)
            values[_RECIPIENT] = recipient
            values[_DIAGNOSTIC] = diagnostic
            values[_STATUS] = status
            values[_REPLY_CODE] = reply
            values[_SMTP_COMMAND] = event.smtp_command or find_command(diagnostic)
            values[_REPORTING_MTA] = event.reporting_mta or (report.dsn.reporting_mta if report.dsn else "")
            values[_BOUNCE_ADDRESS] = bounce_address
            values[_NOTICE] = notice
            values[_ORIGINAL] = original
            out.append(Event(*values))
        return out

    def _original(self, headers: Headers) -> OriginalMessage:
        if not len(headers):
            return NO_ORIGINAL
        correlation = tuple(
            (name, one_line(headers.get(name))) for name in self._correlation if headers.get(name)
        )
        return OriginalMessage(
            message_id=headers.get("message-id").strip(),
            subject=one_line(headers.get("subject")),
            from_addr=strip_address(headers.get("from")),
            to=one_line(headers.get("to")),
            list_id=one_line(headers.get("list-id")),
            return_path=strip_address(headers.get("return-path")),
            date=one_line(headers.get("date")),
            correlation=correlation,
        )

    @staticmethod
    def _bounce_address(report: Report) -> str:
        for name in ("x-original-to", "delivered-to", "envelope-to", "to"):
            for value in report.headers.get_all(name):
                address = strip_address(value)
                if address:
                    return address
        return ""

    def _verp_recipient(self, report: Report, original: OriginalMessage) -> str:
        """The recipient encoded in the address the report was sent to, or in the original's
        return path, when those are VERP addresses."""
        candidates = [
            *report.headers.get_all("x-original-to"),
            *report.headers.get_all("delivered-to"),
            *report.headers.get_all("envelope-to"),
            report.headers.get("to"),
            original.return_path,
            report.original_headers.get("x-original-from"),
        ]
        for candidate in candidates:
            found = return_path.recover(strip_address(candidate), self._verp_prefixes) if candidate else ""
            if found:
                return found
        return ""


def _sender_used(event: Event, original: OriginalMessage) -> str:
    """The address the sender wrote, for a recipient the receiver rewrote to an internal host:
    the Original-Recipient, else the returned message's only To: address."""
    if event.original_recipient and not is_internal_form(event.original_recipient):
        return strip_address(event.original_recipient)
    found = addresses(original.to)
    return found[0] if len(found) == 1 and not is_internal_form(found[0]) else ""


@lru_cache(maxsize=1)
def _default_parser() -> Parser:
    return Parser()


def parse(data: bytes, settings: ParseSettings | None = None) -> list[Event]:
    """Parse one message with the default (or given) settings. Raises ParseError on unreadable input."""
    parser = _default_parser() if settings is None else Parser(settings)
    return parser.parse(data)
