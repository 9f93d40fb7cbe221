"""Sendmail, new (8.x, with a DSN part) and old (V5/V8 plain text): "----- The following
addresses had permanent fatal errors -----" and "----- Transcript of session follows -----"."""

from __future__ import annotations

import re

from processor.parse.mta._common import failure, from_dsn, unique
from processor.parse.report import Report
from processor.parse.text import ADDRESS, find_status, one_line, strip_address
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


class _Transcript:
    """What a session transcript says: the lines about each address, the command each address
    failed at, the addresses in the order they appear, and the replies no address claimed (with
    the command they answered)."""

    def __init__(self) -> None:
        self.lines_for: dict[str, list[str]] = {}
        self.command_for: dict[str, str] = {}
        self.order: list[str] = []
        self.unclaimed: list[tuple[str, str]] = []
        self.replied: set[str] = set()

    def add(self, key: str, line: str, *, own: bool = False) -> None:
        """Record a line about an address: a remote server's reply, or (``own``) Sendmail's own
        line. Sendmail's own line is dropped once the remote's reply is there: after any 5xx at
        RCPT it writes a canned "550 5.1.1 <addr>... User unknown", and the remote's own text
        must decide the cause."""
        if key not in self.lines_for:
            self.order.append(key)
        if own and key in self.replied:
            return
        if not own:
            self.replied.add(key)
        self.lines_for.setdefault(key, []).append(line)

    def command_answered(self, reply: str) -> str:
        """The command of the unclaimed reply this text repeats ('' if none does)."""
        text = one_line(reply)
        for command, said in self.unclaimed:
            if said and (said in text or text in said):
                return command
        return ""


def _transcript(text: str) -> _Transcript:
    """Read a Sendmail session transcript.

    Sendmail pipelines (RFC 2920): it sends MAIL, every RCPT and DATA together and logs only
    ">>> DATA", then the replies in order. A reply followed by Sendmail's own line about an
    address ("550 5.1.1 <addr>... User unknown", "<addr>... Deferred: ...") answered that
    address's RCPT TO; a reply no address line claims answered the command logged (DATA itself,
    MAIL, or the end of the message); see ``_answers_rcpt`` for a reply after ">>> DATA". After
    the end of the message ("."), per-address replies are an LMTP server's answers to the data,
    one per recipient."""
    found = _Transcript()
    last_command = ""
    last_reply: list[str] = []

    def settle_reply() -> None:
        if last_reply:
            verb = _verb(last_command.split(":")[0].split()[0]) if last_command.strip() else ""
            found.unclaimed.append((verb, one_line(" ".join(last_reply))))

    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if _WHILE_TALKING.match(line):
            settle_reply()
            last_command, last_reply = "", []
            continue
        sent = _SENT.match(line)
        if sent:
            settle_reply()
            last_command = sent.group(1)
            last_reply = []
            continue
        received = _RECEIVED.match(line)
        if received:
            settle_reply()
            last_reply = [received.group(1)]
            rcpt = ADDRESS.search(last_command) if last_command.upper().startswith("RCPT") else None
            if rcpt:
                key = strip_address(rcpt.group(1)).lower()
                found.add(key, received.group(1))
                found.command_for.setdefault(key, "RCPT")
                last_reply = []
            continue
        result = _RESULT.match(line) or _BARE_RESULT.match(line)
        if result and "@" in result.group(3):
            key = strip_address(result.group(3)).lower()
            said = found.lines_for.get(key, [])
            if last_reply and not said:
                for reply_line in last_reply:
                    found.add(key, reply_line)
                verb = _verb(last_command.split(":")[0].split()[0]) if last_command.strip() else ""
                if verb == "DATA" and last_command.strip().upper() == "DATA" and _answers_rcpt(key, last_reply, line):
                    verb = "RCPT"  # a pipelined RCPT TO's reply, read after DATA was sent
                if verb:
                    found.command_for.setdefault(key, verb)
            found.add(key, line, own=True)
            last_reply = []  # the reply belongs to this address only; the command stays
            continue
        if last_reply and not line.startswith(("<<<", ">>>")) and not _RESULT.match(line):
            last_reply.append(line)
        else:
            settle_reply()
            last_reply = []
    settle_reply()
    return found


_NO_SUCH_USER = re.compile(r"\.\.\.\s*User unknown\b", re.IGNORECASE)


def _answers_rcpt(key: str, reply: list[str], line: str) -> bool:
    """Whether a reply read after a pipelined ">>> DATA" answered the RCPT TO of the address on
    Sendmail's line after it: the reply names that address, or Sendmail's line is its
    "<addr>... User unknown", which it writes only for a refused recipient. Otherwise (its
    "<addr>... Service unavailable" after a refused message) the reply answered DATA."""
    return key in " ".join(reply).lower() or bool(_NO_SUCH_USER.search(line))


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
    session = _transcript(transcript)
    said, commands, order = session.lines_for, session.command_for, session.order
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
            if key not in commands and rcpt.diagnostic:
                command = session.command_answered(rcpt.diagnostic)
                if command:
                    commands[key] = command
        return from_dsn(NAME, report, texts, commands=commands) or None
    if not texts:
        return None
    for key, reason in fatal:
        if key.lower() not in commands and reason:
            command = session.command_answered(reason)
            if command:
                commands[key.lower()] = command
    kind = EventKind.DELAY if transient or "Warning: could not send" in report.subject else EventKind.FAILURE
    if not fatal and "Deferred" in transcript and "Returned mail" not in report.subject:
        kind = EventKind.DELAY
    events = [
        failure(NAME, address, diagnostic, command=commands.get(address, ""), kind=kind)
        for address, diagnostic in texts.items()
        if "@" in address
    ]
    return unique(events) or None
