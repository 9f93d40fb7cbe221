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
        """The address the sender used: Final-Recipient, unless it is an internal rewrite of the
        Original-Recipient (a host without a domain, or a mailbox host inside the original's domain)."""
        final, original = self.final_recipient, self.original_recipient
        if final and original and is_internal_rewrite(final, original):
            return original
        return final or original


def internal_host(address: str) -> bool:
    """True for an address at a host no sender writes to: a name without a dot (mailhub0,
    sims-ms-daemon), which only the receiving system's own routing uses."""
    domain = address.rpartition("@")[2].strip("[]").lower()
    return bool(domain) and "." not in domain and ":" not in domain


def is_internal_rewrite(final: str, original: str) -> bool:
    """Final-Recipient is the receiving system's rewrite of Original-Recipient."""
    if "@" not in original or "." not in original.rpartition("@")[2]:
        return False
    if "@" not in final or internal_host(final):
        return True
    final_local, _, final_domain = final.lower().rpartition("@")
    original_local, _, original_domain = original.lower().rpartition("@")
    return final_local == original_local and final_domain.endswith("." + original_domain)


@dataclass(slots=True)
class DsnReport:
    """The per-message fields and every recipient block of one or more delivery-status parts."""

    reporting_mta: str = ""
    arrival_date: str = ""
    received_from_mta: str = ""
    recipients: list[DsnRecipient] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


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
