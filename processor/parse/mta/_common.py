"""What the per-MTA detectors share: the detector contract and event builders."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from processor.parse.dsn import DsnRecipient, is_internal_form, names_no_mailbox
from processor.parse.report import Report
from processor.parse.text import (
    ADDRESS,
    STATUS,
    addresses,
    find_command,
    find_reply_code,
    find_status,
    squash_reply,
    strip_address,
)
from processor.records import Event, EventKind


class Detector(Protocol):
    """One module per MTA or provider family.

    ``matches`` is the cheap guard (headers only, no body scanning beyond a substring test);
    ``parse`` returns the events, or None when the message turns out not to be this family's.
    """

    NAME: str

    def matches(self, report: Report) -> bool: ...

    def parse(self, report: Report) -> list[Event] | None: ...


ACTION_KIND = {
    "failed": EventKind.FAILURE,
    "failure": EventKind.FAILURE,
    "delayed": EventKind.DELAY,
    "delivered": EventKind.DELIVERED,
    "relayed": EventKind.DELIVERED,
    "expanded": EventKind.DELIVERED,
}


def kind_for(action: str, status: str) -> EventKind:
    """The event kind from a DSN action, or from the status class when the action is missing."""
    kind = ACTION_KIND.get(action.lower())
    if kind is not None:
        if kind is EventKind.DELAY and status.startswith("5"):
            return EventKind.FAILURE
        return kind
    if status.startswith("2"):
        return EventKind.DELIVERED
    if status.startswith("4") and action.lower() not in ("", "failed"):
        return EventKind.DELAY
    return EventKind.FAILURE


def failure(
    mta: str,
    recipient: str,
    diagnostic: str = "",
    *,
    status: str = "",
    reply_code: str = "",
    command: str = "",
    remote_mta: str = "",
    kind: EventKind = EventKind.FAILURE,
    dsn_action: str = "",
) -> Event:
    """A failure event from what a text bounce says; status, reply code and command are read
    from the diagnostic when not given."""
    diagnostic = squash_reply(diagnostic)
    return Event(
        kind=kind,
        recipient=strip_address(recipient),
        dsn_action=dsn_action or ("failed" if kind is EventKind.FAILURE else ""),
        status=status or find_status(diagnostic),
        reply_code=reply_code or find_reply_code(diagnostic),
        smtp_command=command or find_command(diagnostic),
        diagnostic=diagnostic,
        remote_mta=remote_mta,
        mta=mta,
    )


def from_dsn(
    mta: str,
    report: Report,
    texts: dict[str, str] | None = None,
    *,
    commands: dict[str, str] | None = None,
    prefer_text: bool = False,
) -> list[Event]:
    """Events from the report's delivery-status blocks.

    ``texts`` maps a lower-cased recipient to what the human-readable part says about it; it fills
    a missing Diagnostic-Code (or replaces it when ``prefer_text``) and is searched for the SMTP
    command and codes.
    """
    dsn = report.dsn
    if dsn is None:
        return []
    texts = texts or {}
    commands = commands or {}
    events: list[Event] = []
    named = [a for a in texts if ADDRESS.fullmatch(a)]
    for index, rcpt in enumerate(dsn.recipients):
        if not ADDRESS.fullmatch(rcpt.recipient) and len(named) == len(dsn.recipients):
            rcpt.final_recipient = named[index]  # a mangled Final-Recipient: the text names it
        address = rcpt.recipient
        key = address.lower()
        said = (
            texts.get(key)
            or texts.get(rcpt.original_recipient.lower(), "")
            or texts.get(rcpt.final_recipient.lower(), "")
        )
        diagnostic = rcpt.diagnostic
        if said and (prefer_text or not diagnostic):
            diagnostic = said
        if not diagnostic and len(dsn.recipients) == 1:
            diagnostic = notice_context(report.notice, address)
        events.append(dsn_event(mta, report, rcpt, diagnostic, extra_text=said, command=commands.get(key, "")))
    return events


def dsn_event(
    mta: str, report: Report, rcpt: DsnRecipient, diagnostic: str, *, extra_text: str = "", command: str = ""
) -> Event:
    diagnostic = squash_reply(diagnostic)
    status = best_status(rcpt.status, diagnostic)
    dsn = report.dsn
    return Event(
        kind=kind_for(rcpt.action, status),
        recipient=_address_used(report, rcpt),
        original_recipient=rcpt.original_recipient,
        dsn_action=rcpt.action,
        status=status,
        reply_code=find_reply_code(diagnostic) or find_reply_code(extra_text),
        smtp_command=command or find_command(diagnostic) or find_command(extra_text),
        diagnostic=diagnostic,
        diagnostic_type=rcpt.diagnostic_type,
        remote_mta=rcpt.remote_mta,
        reporting_mta=dsn.reporting_mta if dsn else "",
        last_attempt=rcpt.last_attempt,
        arrival_date=dsn.arrival_date if dsn else "",
        mta=mta,
    )


def _address_used(report: Report, rcpt: DsnRecipient) -> str:
    """The recipient, or, when the report names only an internal form of it (``alice@mailhub``,
    ``alice@ims-ms-daemon``, ``IMCEAEX-...``) and no Original-Recipient, the one address the
    returned message was sent To: with the same mailbox name (any name, when the internal form
    keeps none)."""
    address = rcpt.recipient
    if rcpt.original_recipient or not is_internal_form(address):
        return address
    sent_to = [a for a in addresses(report.original_headers.get("to")) if "." in a.rpartition("@")[2]]
    if len(sent_to) != 1:
        return address
    if sent_to[0].lower().rpartition("@")[0] == address.lower().rpartition("@")[0] or names_no_mailbox(address):
        return sent_to[0]
    return address


def best_status(stated: str, diagnostic: str) -> str:
    """The DSN's status, unless the diagnostic names a more precise one: the stated code is
    generic for its subject (X.Y.0), or it is the "gave up" code X.4.7 wrapping the real cause."""
    codes = [c for c in _all_statuses(diagnostic) if c != stated]
    if not stated:
        return find_status(diagnostic)
    if not codes:
        return stated
    if stated in ("4.4.7", "5.4.7"):
        return codes[-1]
    said = _said_statuses(diagnostic)
    if stated.endswith(".0.0") and said and said[0] != stated and not said[0].endswith(".0.0"):
        # a reporter's canned X.0.0 (Exim's 5.0.0 when it gives up on a 4xx) names no cause;
        # the code the remote server gave with its reply does, whatever its class
        return said[0]
    for code in codes:
        if code[0] == stated[0] and not code.endswith(".0.0"):
            return code
    return stated


_AFTER_REPLY = re.compile(r"[245]\d\d[ \-]['\"(#]?$")


def _all_statuses(text: str) -> list[str]:
    """Status codes in a diagnostic, those the remote server gave after its reply code first."""
    said, other = _statuses_by_origin(text)
    return said + other


def _said_statuses(text: str) -> list[str]:
    """The status codes that directly follow a reply code (the remote server's own)."""
    return _statuses_by_origin(text)[0]


def _statuses_by_origin(text: str) -> tuple[list[str], list[str]]:
    said: list[str] = []
    other: list[str] = []
    for m in STATUS.finditer(text or ""):
        if int(m.group(2)) > 7:
            continue
        code = f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"
        (said if _AFTER_REPLY.search(text[max(0, m.start() - 6) : m.start()]) else other).append(code)
    return said, other


def notice_context(notice: str, address: str) -> str:
    """What the notice says around an address: its paragraph and the one before it (for DSNs
    whose Diagnostic-Code is empty and whose prose explains the failure)."""
    paragraphs = [p.strip() for p in notice.split("\n\n") if p.strip()]
    for index, paragraph in enumerate(paragraphs):
        if address and address.lower() in paragraph.lower():
            context = paragraphs[max(0, index - 1) : index + 1]
            return " ".join(" ".join(p.replace(address, " ").split()) for p in context)
    return ""


# -- plain-text bounces ---------------------------------------------------------------------------

_INDENTED = re.compile(r"^[ \t]+\S")


def blocks_after(text: str, start: re.Pattern[str] | None) -> str:
    """The text after the first match of ``start`` (all of it if there is no start pattern)."""
    if start is None:
        return text
    m = start.search(text)
    return text[m.end() :] if m else ""


def address_paragraphs(
    text: str,
    address_line: re.Pattern[str],
    stop: re.Pattern[str] | None = None,
) -> list[tuple[str, str]]:
    """(address, text that follows it) for each line matching ``address_line`` (group 1 must be
    the address), up to the next such line, a ``stop`` line after the first address, or the end."""
    found: list[tuple[str, str]] = []
    current: str | None = None
    lines: list[str] = []
    for line in text.split("\n"):
        if current is not None and stop is not None and stop.match(line):
            break
        m = address_line.match(line)
        if m and ADDRESS.search(m.group(1)):
            if current is not None:
                found.append((current, "\n".join(lines)))
            current = strip_address(m.group(1))
            rest = line[m.end() :].strip()
            lines = [rest] if rest else []
        elif current is not None:
            lines.append(line)
    if current is not None:
        found.append((current, "\n".join(lines)))
    return found


def unique(events: Iterable[Event]) -> list[Event]:
    """First event per recipient, in order."""
    seen: set[str] = set()
    out: list[Event] = []
    for event in events:
        key = event.recipient.lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(event)
    return out


def any_in(haystack: str, needles: Sequence[str]) -> bool:
    return any(n in haystack for n in needles)
