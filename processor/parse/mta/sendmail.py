"""Sendmail, new (8.x, with a DSN part) and old (V5/V8 plain text): "----- The following
addresses had permanent fatal errors -----" and "----- Transcript of session follows -----"."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, find_status, strip_address
from processor.records import Event, EventKind

NAME = "sendmail"

_SUBJECT = re.compile(
    r"^(?:returned mail:|warning: could not send message|undeliverable mail|mail delivery failure)",
    re.IGNORECASE,
)
_FATAL = re.compile(
    r"^\s*-+\s*The following addresses? (?:had|has) (permanent fatal|transient non-fatal) errors?", re.I | re.M
)
_TRANSCRIPT = re.compile(r"^\s*-+\s*Transcript of session follows\s*-+", re.IGNORECASE | re.MULTILINE)
_SECTION_END = re.compile(
    r"^\s*-{3,}\s*(?:Original message|Unsent message|Returned message|Message header|"
    r"The following addresses|Transcript of session)|^--[\w.=/-]{6,}\s*$|^Content-Type:",
    re.IGNORECASE | re.MULTILINE,
)
_ADDRESS_LINE = re.compile(r"^\s*<?([^\s<>]*@[^\s<>]+|[^\s<>@]+)>?\s*(?:\((.*)\))?\s*$")
_REASON = re.compile(r"^\s*\((?:reason|expanded from)?:?\s*(.*?)\)?\s*$", re.IGNORECASE)
_WHILE_TALKING = re.compile(r"^\.{0,3}\s*while talking to ([^:\s]+?)\.?:\s*$", re.IGNORECASE)
_SENT = re.compile(r"^>>>\s*(.*)$")
_RECEIVED = re.compile(r"^<<<\s*(.*)$")
_BARE_RESULT = re.compile(r"^()()<([^\s<>]+@[^\s<>]+)>\.\.\.\s*(.+)$")
_RESULT = re.compile(r"^([245]\d\d)\s+(?:([245]\.\d{1,3}\.\d{1,3})\s+)?<?([^\s<>]+?)>?\.\.\.\s*(.*)$")


def matches(report: Report) -> bool:
    if _SUBJECT.search(report.subject) or "mail delivery subsystem" in report.from_header.lower():
        return True
    notice = report.notice
    return "----- Transcript of session follows -----" in notice or "had permanent fatal errors" in notice


def _section(text: str, start: re.Pattern[str]) -> str:
    m = start.search(text)
    if not m:
        return ""
    rest = text[m.end() :]
    rest = rest.split("\n", 1)[1] if "\n" in rest else ""
    end = _SECTION_END.search(rest)
    return rest[: end.start()] if end else rest


def _fatal_list(notice: str) -> tuple[list[tuple[str, str]], bool]:
    """(address, reason) from the 'following addresses had ... errors' list; and whether the
    errors are transient."""
    m = _FATAL.search(notice)
    if not m:
        return [], False
    transient = m.group(1).lower().startswith("transient")
    out: list[tuple[str, str]] = []
    for line in _section(notice, _FATAL).split("\n"):
        if not line.strip():
            continue
        reason = _REASON.match(line)
        if line.lstrip().startswith("(") and reason and out:
            address, said = out[-1]
            if "expanded from" not in line.lower():
                out[-1] = (address, f"{said} {reason.group(1)}".strip())
            continue
        found = ADDRESS.search(line)
        if (found and line.lstrip()[:1] in ("<", "")) or (found and line.lstrip().startswith(found.group(1))):
            out.append((strip_address(line.split("(")[0]) or found.group(1), ""))
    return out, transient


def _transcript(text: str) -> tuple[dict[str, list[str]], dict[str, str], list[str]]:
    """From a session transcript: lines about each address, the command each failed at, and the
    addresses in the order they appear."""
    lines_for: dict[str, list[str]] = {}
    command_for: dict[str, str] = {}
    order: list[str] = []
    last_command = ""
    last_reply: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if _WHILE_TALKING.match(line):
            last_command, last_reply = "", []
            continue
        sent = _SENT.match(line)
        if sent:
            last_command = sent.group(1)
            last_reply = []
            continue
        received = _RECEIVED.match(line)
        if received:
            last_reply.append(received.group(1))
            rcpt = ADDRESS.search(last_command) if last_command.upper().startswith("RCPT") else None
            if rcpt:
                key = strip_address(rcpt.group(1)).lower()
                if key not in lines_for:
                    order.append(key)
                lines_for.setdefault(key, []).append(received.group(1))
                command_for.setdefault(key, "RCPT")
            continue
        result = _RESULT.match(line) or _BARE_RESULT.match(line)
        if result and "@" in result.group(3):
            key = strip_address(result.group(3)).lower()
            if key not in lines_for:
                order.append(key)
            said = lines_for.setdefault(key, [])
            if last_reply and not said:
                said.extend(last_reply)
                verb = last_command.split(":")[0].split()[0].upper() if last_command else ""
                if verb:
                    command_for.setdefault(key, _verb(verb))
            said.append(line)
            last_command, last_reply = "", []  # the dialogue belongs to this address only
            continue
        if last_reply and not line.startswith(("<<<", ">>>")):
            last_reply.append(line)
    return lines_for, command_for, order


def _verb(word: str) -> str:
    word = word.upper()
    if word.startswith("RCPT"):
        return "RCPT"
    if word.startswith("MAIL"):
        return "MAIL"
    if word in ("DATA", ".") or word.startswith("(END"):
        return "DATA"
    if word in ("EHLO", "HELO"):
        return "EHLO"
    return ""


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    fatal, transient = _fatal_list(notice)
    transcript = _section(notice, _TRANSCRIPT) if _TRANSCRIPT.search(notice) else ""
    said, commands, order = _transcript(transcript)
    texts: dict[str, str] = {}
    for address, reason in fatal:
        key = address.lower()
        lines = said.get(key, [])
        diagnostic = " ".join(lines) if lines else reason
        if reason and lines and find_status(reason) and not find_status(diagnostic):
            diagnostic = f"{diagnostic} {reason}"
        texts[key] = diagnostic or reason
    for key in order:
        texts.setdefault(key, " ".join(said[key]))
    if report.dsn is not None and report.dsn.recipients:
        for rcpt in report.dsn.recipients:
            key = rcpt.recipient.lower()
            # an X-Unix exit code or an empty Diagnostic-Code says less than the transcript
            if (not rcpt.diagnostic or rcpt.diagnostic.strip().isdigit()) and key in texts:
                rcpt.diagnostic = texts[key]
        return from_dsn(NAME, report, texts, commands=commands) or None
    if not texts:
        return None
    kind = EventKind.DELAY if transient or "Warning: could not send" in report.subject else EventKind.FAILURE
    if not fatal and "Deferred" in transcript and "Returned mail" not in report.subject:
        kind = EventKind.DELAY
    events = [
        failure(NAME, address, diagnostic, command=commands.get(address, ""), kind=kind)
        for address, diagnostic in texts.items()
        if "@" in address
    ]
    return unique(events) or None
