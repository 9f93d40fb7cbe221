"""Small text helpers shared by the detectors: addresses, status codes, reply codes, commands.

All regular expressions are compiled here, once, at import.
"""

from __future__ import annotations

import re
from functools import lru_cache

# A pragmatic address pattern for finding addresses in free text (validation happens elsewhere).
ADDRESS = re.compile(
    r"(?<![\w.+=-])"
    r"([\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@(?:[\w](?:[\w-]*[\w])?\.)+[a-z\w]{2,63}|[\w!#$%&'*+/=?^`{|}~.-]+@\[[\d.:a-f]+\])",
    re.IGNORECASE,
)
ANGLE_ADDRESS = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>")
# STATUS and REPLY start with their first digit and look behind it (``(?<![\d.][245])`` after a
# [245] is ``(?<![\d.])`` before it): a pattern that starts with a character class lets the regex
# engine skip to the next 2, 4 or 5 in C, where a leading look-behind is tried at every position
# (4-5x the time over a notice). tests/parse/test_text.py compares them with the plain forms.
STATUS = re.compile(r"([245])(?<![\d.][245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
REPLY = re.compile(r"([245](?<![\d.\-/:,][245])[0-7]\d)(?=[ ,;]|$|-[245]\.\d|-[^\d])")
REPLY_AT_START = re.compile(r"^\s*(?:#\s*)?([245][0-7]\d)(?:[ \-]|$)")
_BLANKS = re.compile(r"[ \t]+")
_TAGS = re.compile(r"<(?:script|style)\b.*?</(?:script|style)>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_BR = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|/h\d)\s*/?>", re.IGNORECASE)

_BEFORE_COMMAND = r"\b(?:in reply to|after|while sending|on|at)\s+(?:the\s+|pipelined\s+)?"
_COMMANDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"{_BEFORE_COMMAND}(RCPT(?:\s+TO)?)\b", re.I), "RCPT"),
    (re.compile(rf"{_BEFORE_COMMAND}(MAIL(?:\s+FROM)?)\b", re.I), "MAIL"),
    (re.compile(r"\b(?:in reply to|after|while sending)\s+(?:the\s+)?(?:end of\s+)?"
                r"(?:DATA|data block|message body)\b", re.I), "DATA"),
    (re.compile(r"\bafter end of data\b", re.I), "DATA"),
    # CHUNKING (RFC 3030): BDAT carries the message as DATA does; "BDAT n LAST" ends it
    (re.compile(r"\b(?:in reply to|after|while sending)\s+(?:the\s+|pipelined\s+)?BDAT\b", re.I), "DATA"),
    (re.compile(r"\b(?:in reply to|after|while sending)\s+(?:the\s+)?(EHLO|HELO|LHLO)\b", re.I), "EHLO"),
    (re.compile(r"\b(?:in reply to|after)\s+(?:the\s+)?STARTTLS\b", re.I), "STARTTLS"),
    (re.compile(r"\bin reply to\s+(?:the\s+)?(?:AUTH)\b", re.I), "AUTH"),
    (re.compile(r">>>\s*(RCPT)\b", re.I), "RCPT"),
    # a transcript line naming the command the sending server sent: "hMailServer sent: RCPT TO:<...>"
    (re.compile(r"\bsent:\s*(RCPT|MAIL|DATA)\b", re.I), ""),
    (re.compile(r"\[RCPT_TO\]"), "RCPT"),
    (re.compile(r"\[MAIL_FROM\]"), "MAIL"),
    (re.compile(r"\[(?:BODY|DATA)\]"), "DATA"),
    (re.compile(r"\bSMTP:\s*RCPT\b", re.I), "RCPT"),
    (re.compile(r"\bSMTP:\s*MAIL\b", re.I), "MAIL"),
    (re.compile(r"\bSMTP:\s*DATA\b", re.I), "DATA"),
    (re.compile(r">>>\s*(MAIL)\b", re.I), "MAIL"),
    (re.compile(r">>>\s*(DATA|\.|\(end of message\)|end of message)", re.I), "DATA"),
    (re.compile(r">>>\s*(EHLO|HELO|LHLO)\b", re.I), "EHLO"),
    (re.compile(r"\bSMTP error from remote (?:mail server|mailer|server) (?:after|for) (?:pipelined )?"
                r"(RCPT|MAIL|DATA|TEXT|end of data|sending data block|initial connection|EHLO|HELO)", re.I), ""),
    (re.compile(r"\b(?:in reply to|after)\s+(?:the\s+)?(?:initial connection|greeting|banner|connect)\b", re.I),
     "CONN"),
    (re.compile(r"\brefused to talk to me\b|\bwhile receiving the initial server greeting\b|"
                r"\bdid not like our (?:greeting|banner)\b", re.I), "CONN"),
    (re.compile(r"\bconnect to \S+: (?:Connection timed out|Connection refused|No route to host|"
                r"Network is unreachable)|"
                r"\bDeferred: Connection (?:timed out|refused|reset)|did not accept our requests to connect|"
                r"\bConnection (?:timed out|refused) (?:with|by|to) \S+", re.I), "CONN"),
    (re.compile(r"\bin (RCPT TO|MAIL FROM|DATA)\s*$", re.I), ""),
    (re.compile(r"\btimed out while sending (RCPT|MAIL|DATA|end of data|message body)", re.I), ""),
]
_COMMAND_WORDS: tuple[tuple[str, ...], ...] = (
    ("rcpt",), ("mail",), ("data", "message body"), ("after end of data",), ("bdat",), ("ehlo", "helo", "lhlo"),
    ("starttls",), ("auth",), (">>>",), ("sent:",), ("[rcpt_to]",), ("[mail_from]",), ("[body]", "[data]"), ("smtp:",),
    ("smtp:",), ("smtp:",), (">>>",), (">>>",), (">>>",), ("smtp error from remote",),
    ("initial connection", "greeting", "banner", "connect"),
    ("refused to talk to me", "while receiving the initial server greeting", "did not like our"), ("connect",),
    ("rcpt to", "mail from", "data"), ("timed out while sending",),
)
"""For each pattern of ``_COMMANDS``, in order, lower-case words one of which every text it
matches contains: a pattern none of whose words is in the lower-cased text is not tried."""
assert len(_COMMAND_WORDS) == len(_COMMANDS)


_FOLDS_ONTO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")
"""The non-ASCII letters a case-insensitive regex matches to ASCII ones (dotted and dotless i,
long s, Kelvin sign); lower() maps no other non-ASCII character to ASCII, and only the first of
these to two characters."""


def folded(text: str, lower: str | None = None) -> str | None:
    """``text.lower()``, in which a lower-case ASCII word is found exactly where a case-insensitive
    regex would find it (and at the same offsets); None for the rare text where that cannot be
    promised (one with a letter of ``_FOLDS_ONTO_ASCII``). ``lower`` is ``text.lower()`` when the
    caller has it already."""
    if not text.isascii() and any(c in text for c in _FOLDS_ONTO_ASCII):
        return None
    return text.lower() if lower is None else lower


def may_match(text: str, words: tuple[str, ...]) -> bool:
    """False only when a case-insensitive pattern that needs one of ``words`` (lower-case ASCII)
    cannot match ``text``: a cheap test before a costly search."""
    return may_match_folded(folded(text), words)


def may_match_folded(lower: str | None, words: tuple[str, ...]) -> bool:
    """``may_match`` for a text already folded (``folded(text)``): for several word tests of one text."""
    return lower is None or any(word in lower for word in words)


def first_line_search(
    pattern: re.Pattern[str], text: str, words: tuple[str, ...], lower: str | None = None
) -> re.Match[str] | None:
    """``pattern.search(text)`` for a case-insensitive MULTILINE pattern whose matches start at
    a line start and lie within one line that contains one of ``words`` (lower-case ASCII): the
    pattern is tried only at the start of those lines, in order. ``lower`` is ``text.lower()``
    when the caller has it already."""
    lower = folded(text, lower)
    if lower is None:
        return pattern.search(text)
    ahead = [lower.find(word) for word in words]  # the next occurrence of each word
    while True:
        first = min((i for i in ahead if i != -1), default=-1)
        if first == -1:
            return None
        m = pattern.match(text, text.rfind("\n", 0, first) + 1)
        if m is not None:
            return m
        line_end = text.find("\n", first)
        if line_end == -1:
            return None
        ahead = [i if i == -1 or i > line_end else lower.find(w, line_end) for i, w in zip(ahead, words, strict=True)]


def clean(text: str) -> str:
    """Collapse runs of blanks and trim; keeps line breaks."""
    return "\n".join(_BLANKS.sub(" ", line).strip() for line in text.split("\n")).strip()


def one_line(text: str) -> str:
    """Join a multi-line diagnostic into one line of single spaces."""
    return " ".join(text.split())


def html_to_text(markup: str) -> str:
    import html  # (on first use: its entity tables are built at import, for the few HTML notices)

    return html.unescape(_TAGS.sub(" ", _BR.sub("\n", markup)))


def normalise_status(code: str) -> str:
    """'5.1.1' from '5.1.1', '#5.1.1', '5.01.001' and similar; '' if not a status code."""
    m = STATUS.search(code or "")
    if not m:
        return ""
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"


def find_status(text: str) -> str:
    """The first enhanced status code (RFC 3463) in free text, or ''."""
    for m in STATUS.finditer(text or ""):
        cls, subject, detail = m.group(1), int(m.group(2)), int(m.group(3))
        if subject > 7 or detail > 999:
            continue
        return f"{cls}.{subject}.{detail}"
    return ""


_CONTINUED_REPLY = re.compile(r"([245](?:(?<=\s[245])|(?<![\s\S][245]))\d\d)[\- ](?:[245]\.\d{1,3}\.\d{1,3}\s+)?")
r"""``(?:(?<=\s)|^)([245]\d\d)...``, its look-behind moved after the first digit (see STATUS)."""


def squash_reply(text: str) -> str:
    """One line from a multi-line SMTP reply: the first code kept, the repeated
    "550-5.7.1 " prefixes of the continuation lines dropped."""
    text = one_line(text)
    first = _CONTINUED_REPLY.search(text)
    if not first or text.count(first.group(1)) < 2:
        return text
    head = text[: first.end()]
    rest = _CONTINUED_REPLY.sub(
        lambda m: "" if m.group(1) == first.group(1) else m.group(0), text[first.end() :]
    )
    return one_line(head + rest)


_BEFORE_REPLY = (":", "said", "<<<", "smtp;", "(", "error", "returned", "replied", "code", "response", "error_code")


def find_reply_code(text: str) -> str:
    """The SMTP reply code a diagnostic starts with (or that precedes a status code), or ''."""
    if not text:
        return ""
    m = REPLY_AT_START.match(text)
    if m:
        return m.group(1)
    for m in REPLY.finditer(text):
        start = m.start()
        before = text[max(0, start - 12) : start].lower()
        after = text[m.end() : m.end() + 10]
        if (
            before.rstrip().endswith(_BEFORE_REPLY)
            or STATUS.match(after.lstrip(" -,;:"))
        ):
            return m.group(1)
    return ""


def command_named(word: str) -> str:
    """The SMTP command (RCPT, MAIL, DATA, EHLO, else CONN) that a stage word of a report names."""
    word = word.upper()
    if word.startswith("RCPT") or word == "PIPELINED":
        return "RCPT"
    if word.startswith("MAIL"):
        return "MAIL"
    if "DATA" in word or word in ("TEXT", "SENDING DATA BLOCK", "MESSAGE BODY"):
        return "DATA"
    if word in ("EHLO", "HELO"):
        return "EHLO"
    return "CONN"


@lru_cache(maxsize=512)
def find_command(text: str) -> str:
    """The SMTP command a failure happened at, when the text says so ('' otherwise).

    The first pattern of the list that matches wins, wherever in the text; results are cached
    because detectors and the completion step ask about the same diagnostic more than once."""
    if not text:
        return ""
    text = " ".join(text.split())
    lower = folded(text)
    for (pattern, command), words in zip(_COMMANDS, _COMMAND_WORDS, strict=True):
        if lower is not None and not any(word in lower for word in words):
            continue  # (a case-insensitive search over the whole text, at every position, is the cost)
        m = pattern.search(text)
        if m:
            return command or command_named(m.group(1))
    return ""


_ANGLE_ANY = re.compile(r"<([^<>]*@[^<>]*)>")
_ADDRESS_TYPE = re.compile(r"^(?:smtp|rfc822|mailto|x-?smtp|x400|ex)\s*[:=;]\s*(?=[^@\s]*@)", re.IGNORECASE)
"""An address-type prefix glued to an address: Exchange's ``smtp=`` and ``SMTP:`` (proxy address
notation), RFC 3464's ``rfc822;`` and ``mailto:``; only before something that is an address."""


@lru_cache(maxsize=1024)
def strip_address(value: str) -> str:
    """'alice@example.org' from 'rfc822; <alice@example.org>', '"Alice" <alice@...>', 'mailto:...',
    'smtp=alice@...', 'SMTP:alice@...' and Exchange's 'IMCEASMTP-alice+40example+2Eorg@...'.

    Cached: a message's From, To and Return-Path are asked about several times (over the
    sisimai-train corpus, 2,984 calls for 1,022 distinct values)."""
    value = value.strip()
    if ";" in value[:12] and "@" not in value.split(";", 1)[0]:
        value = value.split(";", 1)[1].strip()
    m = _ANGLE_ANY.search(value)
    if m:
        value = m.group(1).strip()
    if value.startswith("@") and ":" in value:  # a source route: <@relay.example:user@example.org>
        value = value.rsplit(":", 1)[1]
    value = value.strip().strip("<>\"'()[],;:.").strip()
    value = _ADDRESS_TYPE.sub("", value).strip("<>\"'").strip()
    if " " in value:
        found = ADDRESS.search(value)
        value = found.group(1) if found else ""
    if value[:10].upper() == "IMCEASMTP-":
        value = _imcea_smtp(value)
    return value


_IMCEA_ESCAPE = re.compile(r"\+([0-9A-Fa-f]{2})")


def _imcea_smtp(value: str) -> str:
    """The SMTP address inside Exchange's IMCEA encapsulation: 'IMCEASMTP-alice+40example+2Eorg@gw'
    is alice@example.org (the '@' and other characters of the inner address as +HH escapes, the
    gateway's domain after the real '@')."""
    inner = value[10:].rpartition("@")[0]
    decoded = _IMCEA_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), inner)
    return decoded if ADDRESS.fullmatch(decoded) else value


def first_address(text: str) -> str:
    m = ADDRESS.search(text or "")
    return m.group(1) if m else ""


def addresses(text: str) -> list[str]:
    return [m.group(1) for m in ADDRESS.finditer(text or "")]
