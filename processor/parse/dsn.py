"""RFC 3464 (and RFC 6533 global) delivery-status fields: per-message and per-recipient blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from processor.parse.text import find_status, one_line, strip_address

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s?(.*)$")
_XTEXT = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}|\+([0-9A-Fa-f]{2})")


@dataclass(slots=True)
class DsnRecipient:
    """One per-recipient block of a delivery-status report."""

    final_recipient: str = ""
    original_recipient: str = ""
    action: str = ""
    status: str = ""
    remote_mta: str = ""
    diagnostic_type: str = ""
    diagnostic: str = ""
    last_attempt: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def recipient(self) -> str:
        """The address the report is about: the Final-Recipient, unless that is an internal
        rewrite of the Original-Recipient (then the address the sender used)."""
        final, original = self.final_recipient, self.original_recipient
        if original and final and is_rewritten(final, original):
            return original
        return self.final_recipient or self.original_recipient


@dataclass(slots=True)
class DsnReport:
    """The per-message fields and every recipient block of one or more delivery-status parts."""

    reporting_mta: str = ""
    arrival_date: str = ""
    received_from_mta: str = ""
    recipients: list[DsnRecipient] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


_INTERNAL_DOMAIN = re.compile(r"^(?:[^.]+|.*-daemon|.+\.(?:local|localdomain|internal|lan|intranet))$", re.IGNORECASE)
"""Host names that only mean something inside the receiving site: a bare host (``mailhub``), a
message store's channel (Sun/Oracle Messaging Server's ``ims-ms-daemon``), a private zone."""


def is_internal_form(address: str) -> bool:
    """Whether an address names a host or directory entry inside the receiving site rather than a
    mailbox at a mail domain."""
    local, _, domain = address.rpartition("@")
    if local[:8].upper() == "IMCEAEX-":  # an Exchange directory name (X.500 DN) wrapped as an address
        return True
    return bool(domain) and bool(_INTERNAL_DOMAIN.match(domain))


def is_rewritten(final: str, original: str) -> bool:
    """Whether a Final-Recipient is the receiving site's own rewrite of the Original-Recipient:
    a routing alias or mailbox host inside the same domain (``alice.smith@store1.example.org``
    for ``alice@example.org``), or the same mailbox at an internal host (``alice@ims-ms-daemon``).
    A different domain is a forward to another site, whose address is the one that failed."""
    final_local, _, final_domain = final.lower().rpartition("@")
    original_local, _, original_domain = original.lower().rpartition("@")
    if not (final_local and original_local and final_domain and original_domain) or final.lower() == original.lower():
        return False
    if "." not in original_domain:
        return False
    if final_domain == original_domain or final_domain.endswith("." + original_domain):
        return True
    # an address at an internal host is never one a sender writes to: whatever its local part,
    # the address the sender used is the one to report
    return is_internal_form(final)


def names_no_mailbox(address: str) -> bool:
    """Whether an internal form keeps no trace of the mailbox name the sender used: a message
    store's channel (``u123@ims-ms-daemon``) or an Exchange directory name (``IMCEAEX-...``)."""
    local, _, domain = address.lower().rpartition("@")
    return domain.endswith("-daemon") or local.startswith("imceaex-")


def _decode_xtext(value: str) -> str:
    """RFC 3461 xtext (+HH) and RFC 6533 utf-8 addresses (\\x{HHHH})."""
    if "\\x{" not in value and "+" not in value:
        return value
    return _XTEXT.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), value)


def _address_field(value: str) -> str:
    kind, sep, rest = value.partition(";")
    if sep and kind.strip().lower() in ("utf-8", "utf8"):
        return strip_address(_decode_xtext(rest))
    return strip_address(value)


def _mta_field(value: str) -> str:
    """'mx.example.org' from 'dns; mx.example.org' or 'dns; mx.example.org [192.0.2.1]'."""
    value = value.split(";", 1)[1] if ";" in value[:8] else value
    value = value.strip()
    return value.split()[0].strip("[]<>") if value else ""


def _blocks(text: str) -> list[list[tuple[str, str]]]:
    """Split a delivery-status body into field blocks, joining folded lines."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for raw in text.split("\n"):
        line = raw.rstrip()
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        if line[0] in " \t" and current:
            name, value = current[-1]
            current[-1] = (name, f"{value}\n{line.strip()}")
            continue
        m = _FIELD.match(line)
        if m:
            current.append((m.group(1).lower(), m.group(2).strip()))
        elif current:  # a continuation line that lost its indentation
            name, value = current[-1]
            current[-1] = (name, f"{value}\n{line.strip()}")
    if current:
        blocks.append(current)
    return blocks


def _split_recipients(fields: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Some reporters omit the blank line between recipient blocks: a field that may appear only
    once per recipient, seen again, starts the next block (taking an Original-Recipient that
    directly precedes a Final-Recipient with it)."""
    out: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in fields:
        if name in _ONCE and name in seen:
            carry: list[tuple[str, str]] = []
            if name == "final-recipient" and current and current[-1][0] == "original-recipient":
                carry = [current.pop()]
            out.append(current)
            current, seen = carry, {n for n, _ in carry}
        current.append((name, value))
        seen.add(name)
    if current:
        out.append(current)
    return [block for block in out if block]


_ONCE = frozenset({"final-recipient", "original-recipient", "action", "status"})


def parse_delivery_status(text: str, report: DsnReport | None = None) -> DsnReport:
    """Parse the body of a message/delivery-status part; several parts merge into one report."""
    report = report if report is not None else DsnReport()
    for block in _blocks(text):
        names = {name for name, _ in block}
        if not names & {"final-recipient", "original-recipient", "action", "status"}:
            for name, value in block:
                if name == "reporting-mta" and not report.reporting_mta:
                    report.reporting_mta = _mta_field(value)
                elif name == "arrival-date" and not report.arrival_date:
                    report.arrival_date = one_line(value)
                elif name == "received-from-mta" and not report.received_from_mta:
                    report.received_from_mta = _mta_field(value)
                else:
                    report.extra.setdefault(name, one_line(value))
            continue
        for fields in _split_recipients(block):
            rcpt = DsnRecipient()
            for name, value in fields:
                if name == "final-recipient":
                    rcpt.final_recipient = _address_field(value)
                elif name == "original-recipient":
                    rcpt.original_recipient = _address_field(value)
                elif name == "x-actual-recipient" and not rcpt.final_recipient:
                    rcpt.final_recipient = _address_field(value)
                elif name == "action":
                    rcpt.action = one_line(value).lower().split(" ")[0] if value.strip() else ""
                elif name == "status":
                    rcpt.status = find_status(value)
                elif name == "remote-mta":
                    rcpt.remote_mta = _mta_field(value)
                elif name == "diagnostic-code":
                    kind, sep, rest = value.partition(";")
                    if sep and len(kind) < 20 and " " not in kind.strip():
                        rcpt.diagnostic_type, rcpt.diagnostic = kind.strip().lower(), one_line(rest)
                    else:
                        rcpt.diagnostic = one_line(value)
                elif name == "last-attempt-date":
                    rcpt.last_attempt = one_line(value)
                elif name == "reporting-mta" and not report.reporting_mta:
                    report.reporting_mta = _mta_field(value)
                elif name == "arrival-date" and not report.arrival_date:
                    report.arrival_date = one_line(value)
                else:
                    rcpt.extra[name] = one_line(value)
            if rcpt.recipient or rcpt.status or rcpt.action:
                report.recipients.append(rcpt)
    return report
